# mypy: disable-error-code="no-untyped-call"
"""Server configuration (RECSVC_* variables, tokens, dev token) and `recsvc serve` itself.

The generated stubs (recsvc.v1.*_pb2_grpc) are unannotated, hence the mypy line above.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_helpers import clean_env, recsvc
from serving_fixtures import add_copy, free_port, trained

from feature_store.connection import RedisSettings
from recsvc.client import default_token
from recsvc.config import ConfigError, ServeConfig, parse_tokens
from recsvc.server import with_auth
from recsvc.services import SCOPES
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc

VERSION = "20260101T000000Z-served"


# -- ServeConfig.from_env -------------------------------------------------------------------


def test_from_env_reads_every_variable(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    env = {
        "RECSVC_MODEL_DIR": "/srv/recsvc/models",
        "RECSVC_HOST": "0.0.0.0",
        "RECSVC_PORT": "6000",
        "RECSVC_METRICS_PORT": "0",
        "RECSVC_WORKERS": "3",
        "RECSVC_THREADS": "4",
        "RECSVC_AUTH_TOKENS": "a=recommend+events, b=admin",
        "RECSVC_TLS_CERT": str(cert),
        "RECSVC_TLS_KEY": str(key),
        "RECSVC_RELOAD_INTERVAL": "0.5",
        "RECSVC_REPEAT_CATEGORIES": "coffee, snacks,,",
        "RECSVC_MAX_PER_CATEGORY": "2",
        "REDIS_URL": "redis://cache:6379/0",
        "UNRELATED": "ignored",
    }
    config = ServeConfig.from_env(env)
    assert config == ServeConfig(
        model_dir=Path("/srv/recsvc/models"),
        host="0.0.0.0",
        port=6000,
        metrics_port=0,
        workers=3,
        threads=4,
        auth_tokens={"a": frozenset({"recommend", "events"}), "b": frozenset({"admin"})},
        tls_cert=Path(str(cert)),
        tls_key=Path(str(key)),
        reload_interval=0.5,
        repeat_categories=frozenset({"coffee", "snacks"}),
        max_per_category=2,
        redis=RedisSettings(url="redis://cache:6379/0", data_dir=Path("/srv/recsvc/redis")),
    )
    assert not config.is_loopback


def test_from_env_defaults_and_overrides() -> None:
    empty = ServeConfig.from_env({"RECSVC_PORT": "", "RECSVC_HOST": ""})  # empty = unset
    assert empty.model_dir == Path("var/models")
    assert (empty.host, empty.port, empty.metrics_port) == ("127.0.0.1", 50051, 9464)
    assert empty.workers == (os.cpu_count() or 1) and empty.threads == 8
    assert empty.auth_tokens == {} and empty.tls_cert is None and empty.tls_key is None
    assert empty.reload_interval == 2.0 and empty.repeat_categories == frozenset()
    assert empty.is_loopback

    # Flags (overrides) win over the environment; a flag not given (None) does not.
    env = {"RECSVC_PORT": "6000", "RECSVC_HOST": "10.0.0.7", "RECSVC_WORKERS": "3"}
    config = ServeConfig.from_env(env, port=7000, host=None, workers=None, threads=2)
    assert (config.port, config.host, config.workers, config.threads) == (7000, "10.0.0.7", 3, 2)


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSVC_PORT", "6123")
    monkeypatch.setenv("RECSVC_AUTH_TOKENS", "t=privacy")
    config = ServeConfig.from_env()
    assert config.port == 6123 and config.auth_tokens == {"t": frozenset({"privacy"})}


def test_tokens_file_is_merged_with_the_variable(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text("# ops tokens\nops-token = admin + privacy\n\nsvc-token=recommend\n")
    config = ServeConfig.from_env(
        {"RECSVC_AUTH_TOKENS": "web=recommend+events", "RECSVC_AUTH_TOKENS_FILE": str(file)}
    )
    assert config.auth_tokens == {
        "web": frozenset({"recommend", "events"}),
        "ops-token": frozenset({"admin", "privacy"}),
        "svc-token": frozenset({"recommend"}),
    }


def test_parse_tokens_accepts_every_scope() -> None:
    text = ",".join(f"t{n}={scope}" for n, scope in enumerate(SCOPES))
    assert parse_tokens(text, "X") == {f"t{n}": frozenset({s}) for n, s in enumerate(SCOPES)}
    assert parse_tokens("all=" + "+".join(SCOPES), "X") == {"all": frozenset(SCOPES)}
    assert parse_tokens(" , \n# nothing\n", "X") == {}


@pytest.mark.parametrize(
    "entry",
    [
        "supersecret=recommend+root",  # unknown scope
        "supersecret=",  # no scope
        "supersecret",  # no '='
        "=admin",  # no token
        "supersecret=admin,other",  # second entry without '='
    ],
)
def test_bad_token_entries_are_refused_without_leaking_the_token(entry: str) -> None:
    with pytest.raises(ConfigError, match="RECSVC_AUTH_TOKENS") as info:
        ServeConfig.from_env({"RECSVC_AUTH_TOKENS": entry})
    assert "supersecret" not in str(info.value)
    assert "recommend" in str(info.value)  # the valid scopes are listed


def test_bad_tokens_file(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text("good=admin\nbad=superuser\n")
    with pytest.raises(ConfigError, match=str(file)):
        ServeConfig.from_env({"RECSVC_AUTH_TOKENS_FILE": str(file)})
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError, match="RECSVC_AUTH_TOKENS_FILE") as info:
        ServeConfig.from_env({"RECSVC_AUTH_TOKENS_FILE": str(missing)})
    assert str(missing) in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RECSVC_PORT", "http"),
        ("RECSVC_PORT", "50051.5"),
        ("RECSVC_METRICS_PORT", "off"),
        ("RECSVC_WORKERS", "two"),
        ("RECSVC_THREADS", "1.5"),
        ("RECSVC_RELOAD_INTERVAL", "soon"),
        ("RECSVC_MAX_PER_CATEGORY", "3x"),
    ],
)
def test_bad_numbers_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name) as info:
        ServeConfig.from_env({name: value})
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RECSVC_PORT", "-1", "port -1 is out of range"),
        ("RECSVC_PORT", "70000", "port 70000 is out of range"),
        ("RECSVC_METRICS_PORT", "-1", "metrics port -1"),
        ("RECSVC_WORKERS", "0", "workers"),
        ("RECSVC_THREADS", "0", "threads"),
    ],
)
def test_numbers_out_of_range_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServeConfig.from_env({name: value})


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_reload_interval_that_is_not_positive_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"RELOAD_INTERVAL|reload"):
        ServeConfig.from_env({"RECSVC_RELOAD_INTERVAL": value})


def test_a_negative_category_cap_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"MAX_PER_CATEGORY|per category"):
        ServeConfig.from_env({"RECSVC_MAX_PER_CATEGORY": "-1"})


@pytest.mark.parametrize("half", ["RECSVC_TLS_CERT", "RECSVC_TLS_KEY"])
def test_half_a_tls_config_is_refused(half: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServeConfig.from_env({half: "/etc/recsvc/x.pem"})
    assert "RECSVC_TLS_CERT" in str(info.value) and "RECSVC_TLS_KEY" in str(info.value)
    with pytest.raises(ConfigError, match="RECSVC_TLS"):
        ServeConfig.from_env({}, **{half.removeprefix("RECSVC_").lower(): Path("/x.pem")})


# -- with_auth ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "recsvc.internal"])
def test_no_tokens_on_a_public_address_is_refused(tmp_path: Path, host: str) -> None:
    config = ServeConfig(model_dir=tmp_path / "models", host=host, workers=1)
    with pytest.raises(ConfigError, match="RECSVC_AUTH_TOKENS") as info:
        with_auth(config)
    assert host in str(info.value)
    assert not (tmp_path / "dev-token").exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "localhost", "::1"])
def test_loopback_without_tokens_gets_a_private_dev_token(
    tmp_path: Path,
    host: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RECSVC_TOKEN", raising=False)
    model_dir = tmp_path / "var" / "models"
    config = with_auth(ServeConfig(model_dir=model_dir, host=host, workers=1))
    [(token, scopes)] = config.auth_tokens.items()
    assert scopes == frozenset(SCOPES) and len(token) >= 24
    file = tmp_path / "var" / "dev-token"
    assert file.read_text().strip() == token
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert token in capsys.readouterr().out
    assert default_token(model_dir) == token  # what `recsvc client` sends
    # A restart makes a new token.
    again = with_auth(ServeConfig(model_dir=model_dir, host=host, workers=1))
    assert list(again.auth_tokens) != [token]
    assert file.read_text().strip() == next(iter(again.auth_tokens))


def test_dev_token_is_private_even_if_the_file_existed(tmp_path: Path) -> None:
    file = tmp_path / "dev-token"
    file.write_text("old\n")
    file.chmod(0o644)
    with_auth(ServeConfig(model_dir=tmp_path / "models", workers=1))
    assert stat.S_IMODE(file.stat().st_mode) == 0o600


def test_configured_tokens_are_kept_and_no_dev_token_is_written(tmp_path: Path) -> None:
    config = ServeConfig(
        model_dir=tmp_path / "models", host="0.0.0.0", auth_tokens={"t": frozenset({"admin"})}
    )
    assert with_auth(config) is config
    assert not (tmp_path / "dev-token").exists()


# -- `recsvc serve` -------------------------------------------------------------------------


def run_serve(tmp_path: Path, model_dir: Path, workers: str) -> subprocess.CompletedProcess[str]:
    args = ["serve", "--model-dir", str(model_dir), "--port", str(free_port())]
    return subprocess.run(
        recsvc(*args, "--metrics-port", "0", "--http-port", "0", "--workers", workers),
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_without_a_model_exits_2_and_says_how_to_train_one(
    tmp_path: Path, workers: str
) -> None:
    model_dir = tmp_path / "models"
    result = run_serve(tmp_path, model_dir, workers)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("recsvc serve: error:")
    assert "no published model" in result.stderr and str(model_dir) in result.stderr
    assert "recsvc train" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_with_a_damaged_published_model_exits_2(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, workers: str
) -> None:
    model_dir = tmp_path / "models"
    add_copy(model_dir, trained(tmp_path_factory, "exact"), VERSION, publish=True)
    factors = model_dir / VERSION / "factors.npz"
    data = bytearray(factors.read_bytes())
    data[len(data) // 2] ^= 0xFF
    factors.write_bytes(bytes(data))
    result = run_serve(tmp_path, model_dir, workers)
    assert "factors.npz is damaged" in result.stderr
    assert result.returncode == 2, result.stderr


def test_serve_with_a_bad_offer_catalog_exits_2_naming_the_problem(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model_dir = tmp_path / "models"
    add_copy(model_dir, trained(tmp_path_factory, "exact"), VERSION, publish=True)
    offers = tmp_path / "offers.yaml"
    offers.write_text("version: 1\noffers:\n  - offer_id: x\n    title: X\n    kind: voucher\n")
    args = ["serve", "--model-dir", str(model_dir), "--port", str(free_port())]
    result = subprocess.run(
        recsvc(*args, "--metrics-port", "0", "--http-port", "0", "--workers", "1"),
        env={**clean_env(tmp_path), "RECSVC_OFFERS": str(offers)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("recsvc serve: error: RECSVC_OFFERS:")
    assert "voucher" in result.stderr and "Traceback" not in result.stderr


def test_missing_tls_files_are_a_config_error(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from recsvc.server import start

    model_dir = tmp_path / "models"
    add_copy(model_dir, trained(tmp_path_factory, "exact"), VERSION, publish=True)
    config = ServeConfig(
        model_dir=model_dir,
        port=0,
        workers=1,
        auth_tokens={"t": frozenset({"admin"})},
        tls_cert=tmp_path / "missing-cert.pem",
        tls_key=tmp_path / "missing-key.pem",
    )
    with pytest.raises(ConfigError, match="missing-"):
        start(config).stop(grace=0)


def listening_on(process: psutil.Process, port: int) -> bool:
    try:
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
            for c in process.net_connections(kind="tcp")
        )
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def served_dir(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path / "var" / "models"
    add_copy(model_dir, trained(tmp_path_factory, "exact"), VERSION, publish=True)
    return model_dir


@pytest.fixture
def two_workers(
    served_dir: Path, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    port, http_port = free_port(), free_port()
    out = (tmp_path / "serve.out").open("w")
    err = (tmp_path / "serve.err").open("w")
    args = ["serve", "--model-dir", str(served_dir), "--port", str(port), "--workers", "2"]
    process = subprocess.Popen(
        recsvc(*args, "--metrics-port", "0", "--http-port", str(http_port)),
        env=clean_env(tmp_path),
        stdout=out,
        stderr=err,
        text=True,
        start_new_session=True,
    )
    try:
        yield process, port, http_port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        out.close()
        err.close()


def test_serve_two_workers_share_one_port_and_stop_on_sigterm(
    two_workers: tuple[subprocess.Popen[str], int, int], served_dir: Path, tmp_path: Path
) -> None:
    process, port, http_port = two_workers
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + 45
    workers: list[psutil.Process] = []
    while True:
        assert process.poll() is None, (tmp_path / "serve.err").read_text()
        assert time.monotonic() < deadline, "the two workers never listened on the port"
        workers = parent.children()
        if len(workers) == 2 and all(
            listening_on(w, port) and listening_on(w, http_port) for w in workers
        ):
            break
        time.sleep(0.1)
    assert not listening_on(parent, port)  # only the workers hold the ports
    assert not listening_on(parent, http_port)

    token = (served_dir.parent / "dev-token").read_text().strip()
    metadata = (("authorization", f"Bearer {token}"),)
    for _ in range(4):  # new connections: the kernel spreads them over the workers
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            # A worker listens a moment before it is ready (NOT_SERVING until then).
            ready = time.monotonic() + 30
            while True:
                health = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service="recsvc.v1.Recommender"), timeout=10
                )
                if health.status == health_pb2.HealthCheckResponse.SERVING:
                    break
                assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
                assert time.monotonic() < ready, "a worker never became ready"
                time.sleep(0.1)
            reply = pb_grpc.RecommenderStub(ch).RecommendProducts(
                pb.RecommendProductsRequest(customer_id="C0000001", limit=5),
                metadata=metadata,
                timeout=10,
            )
            assert reply.model_version == VERSION and len(reply.items) == 5
            info = pb_grpc.AdminStub(ch).GetModelInfo(
                pb.GetModelInfoRequest(), metadata=metadata, timeout=10
            )
            assert info.version == VERSION
        # HTTP/JSON on the shared HTTP port, a new connection each time.
        request = urllib.request.Request(
            f"http://127.0.0.1:{http_port}/recsvc.v1.Recommender/RecommendProducts",
            data=b'{"customerId": "C0000001", "limit": 5}',
            headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = json.loads(answer.read())
        assert body["modelVersion"] == VERSION and len(body["items"]) == 5
    # The dashboard's traffic is the whole server's, whichever worker answers: 4 calls over
    # gRPC and 4 over HTTP, wherever the kernel put their connections.
    for _ in range(3):
        traffic = urllib.request.Request(
            f"http://127.0.0.1:{http_port}/dashboard/api/traffic",
            headers={"authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(traffic, timeout=10) as answer:
            rows = {r["method"]: r for r in json.loads(answer.read())["table"]}
        assert rows["recsvc.v1.Recommender/RecommendProducts"]["calls"] == 8

    began = time.monotonic()
    descendants = parent.children(recursive=True)  # the workers and the embedded Redis
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0, (tmp_path / "serve.err").read_text()
    assert time.monotonic() - began < 10
    _, alive = psutil.wait_procs(descendants, timeout=5)
    assert alive == []
    assert "worker exit codes" not in (tmp_path / "serve.err").read_text()
    assert "development token" in (tmp_path / "serve.out").read_text()


def test_token_file_comments_may_hold_commas() -> None:
    from recsvc.config import parse_tokens

    tokens = parse_tokens("# web, ops\nweb=recommend,ops=admin\n", "tokens.txt")
    assert tokens == {"web": frozenset({"recommend"}), "ops": frozenset({"admin"})}


def test_port_zero_needs_one_worker() -> None:
    with pytest.raises(ConfigError, match="workers"):
        ServeConfig(port=0, workers=2).checked()


@pytest.mark.parametrize(
    ("busy_one", "message"),
    [
        ("port", "cannot listen on 127.0.0.1"),
        ("http_port", r"cannot listen for HTTP on 127.0.0.1:\d+ .*RECSVC_HTTP_PORT"),
    ],
)
def test_a_busy_port_is_a_config_error(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, busy_one: str, message: str
) -> None:
    import socket

    from recsvc.server import start

    model_dir = tmp_path / "models"
    add_copy(model_dir, trained(tmp_path_factory, "exact"), VERSION, publish=True)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        ports = {"port": 0, "metrics_port": 0, "http_port": 0, busy_one: busy.getsockname()[1]}
        config = ServeConfig(
            model_dir=model_dir, workers=1, auth_tokens={"t": frozenset({"admin"})}, **ports
        )
        with pytest.raises(ConfigError, match=message):
            start(config)


# -- the HTTP port ------------------------------------------------------------------------------


def test_http_settings_from_env() -> None:
    from recsvc.ratelimit import Limit

    config = ServeConfig.from_env(
        {
            "RECSVC_HTTP_PORT": "8181",
            "RECSVC_CORS_ORIGINS": "https://shop.example, http://localhost:3000,",
            "RECSVC_ADDRESS_RATE_LIMIT": "5/s:10",
            "RECSVC_TRUSTED_PROXIES": "10.0.0.1,10.0.0.2",
            "RECSVC_AUTH_TOKENS": "page=public",
        }
    )
    assert config.http_port == 8181
    assert config.cors_origins == ("https://shop.example", "http://localhost:3000")
    assert config.address_rate_limit == Limit(5.0, 10.0)
    assert config.trusted_proxies == ("10.0.0.1", "10.0.0.2")
    assert config.auth_tokens == {"page": frozenset({"public"})}
    defaults = ServeConfig.from_env({})
    assert (defaults.http_port, defaults.cors_origins) == (8080, ())
    assert defaults.address_rate_limit == Limit(20.0, 60.0)
    assert ServeConfig.from_env({"RECSVC_ADDRESS_RATE_LIMIT": "0"}).address_rate_limit is None


@pytest.mark.parametrize(
    "origin",
    ["https://shop.example/", "shop.example", "https://shop.example/path", "ftp://x", "HTTP://A"],
)
def test_a_cors_origin_that_browsers_never_send_is_refused(origin: str) -> None:
    with pytest.raises(ConfigError, match=r"RECSVC_CORS_ORIGINS: .* is not an origin"):
        ServeConfig.from_env({"RECSVC_CORS_ORIGINS": f"https://ok.example,{origin}"})
    assert ServeConfig(cors_origins=("*",)).checked().cors_origins == ("*",)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"http_port": 70000}, "HTTP port 70000 is out of range"),
        ({"http_port": 50051}, "also the gRPC or metrics port"),
        ({"http_port": 9464}, "also the gRPC or metrics port"),
    ],
)
def test_http_port_conflicts_are_refused(values: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServeConfig(**values).checked()  # type: ignore[arg-type]


def test_log_sample_keeps_warnings_and_a_share_of_answers() -> None:
    import logging

    from recsvc.logs import Sample

    keep_none = Sample(0.0)
    info = logging.makeLogRecord({"levelno": logging.INFO})
    warning = logging.makeLogRecord({"levelno": logging.WARNING})
    assert not keep_none.filter(info) and keep_none.filter(warning)
    half = Sample(0.5)
    kept = sum(half.filter(info) for _ in range(4000))
    assert 1700 < kept < 2300
    assert ServeConfig.from_env({"RECSVC_LOG_SAMPLE": "0.25"}).log_sample == 0.25
    with pytest.raises(ConfigError, match="RECSVC_LOG_SAMPLE"):
        ServeConfig.from_env({"RECSVC_LOG_SAMPLE": "2"})

# mypy: disable-error-code="no-untyped-call"
"""Settings an operator gets wrong, and settings no test used to read (issue 11's test gaps:
RECSVC_FOLD_IN, RECSVC_REDIS_CLUSTER, RECSVC_REDIS_TIMEOUT_MS, RECSVC_REDIS_WRITE_TIMEOUT_MS):
each value reaches the server and has its effect; each bad one is refused naming it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_helpers import clean_env, new_id, recsvc
from redis_fixtures import RedisProcess, new_namespace
from serving_fixtures import free_port
from traffic import pb_event

from feature_store.connection import RedisSettings, SettingsError
from recsvc.config import ConfigError, ServeConfig
from recsvc.server import Running, feature_store, start
from recsvc.services import SCOPES
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc
from reliability.conftest import Served
from reliability.rpcs import bearer

TOKEN = "config-token"


def config_from(env: dict[str, str], model_dir: Path) -> ServeConfig:
    """What `recsvc serve` would run with under ``env`` (one worker, any free port)."""
    env = {"RECSVC_AUTH_TOKENS": f"{TOKEN}={'+'.join(SCOPES)}", **env}
    return ServeConfig.from_env(
        env, model_dir=model_dir, port=0, metrics_port=0, http_port=0, workers=1
    )


# -- RECSVC_FOLD_IN ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("0", False), ("", True)])
def test_fold_in_is_read(value: str, expected: bool) -> None:
    assert ServeConfig.from_env({"RECSVC_FOLD_IN": value}).fold_in is expected


@pytest.mark.parametrize("value", ["2", "yes", "off", "true"])
def test_a_bad_fold_in_is_refused_naming_it(value: str) -> None:
    with pytest.raises(ConfigError, match="RECSVC_FOLD_IN"):
        ServeConfig.from_env({"RECSVC_FOLD_IN": value})


@pytest.fixture
def two_servers(served: Served) -> Iterator[dict[str, Running]]:
    """Servers with RECSVC_FOLD_IN 1 and 0 on one Redis namespace."""
    namespace = new_namespace()
    env = {"REDIS_URL": served.redis_url, "RECSVC_REDIS_NAMESPACE": namespace}
    running = {
        value: start(config_from({**env, "RECSVC_FOLD_IN": value}, served.model_dir))
        for value in ("1", "0")
    }
    yield running
    for r in running.values():
        r.stop(grace=0)


def test_fold_in_0_ignores_real_time_activity_and_1_uses_it(
    two_servers: dict[str, Running],
) -> None:
    customer = "C-new-" + new_id()
    events = [
        pb_event(customer, t, f"P{n:06d}")
        for n, t in enumerate(
            [pb.EVENT_TYPE_VIEW, pb.EVENT_TYPE_VIEW, pb.EVENT_TYPE_ADD_TO_CART] * 2
            + [pb.EVENT_TYPE_PURCHASE],
            start=1,
        )
    ]
    personalized = {}
    for value, running in two_servers.items():
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            if value == "1":
                reply = pb_grpc.EventsStub(channel).TrackEvents(
                    pb.TrackEventsRequest(events=events), metadata=bearer(TOKEN), timeout=10
                )
                assert reply.accepted == len(events)
            rec = pb_grpc.RecommenderStub(channel).RecommendProducts(
                pb.RecommendProductsRequest(customer_id=customer, limit=10),
                metadata=bearer(TOKEN),
                timeout=10,
            )
            personalized[value] = rec.personalized
            # Purchases drop out either way: only the scoring ignores activity.
            assert "P000007" not in [i.product_id for i in rec.items]
    assert personalized == {"1": True, "0": False}


# -- RECSVC_REDIS_CLUSTER ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), ("0", False), ("no", False), ("", False)],
)
def test_redis_cluster_is_read(value: str, expected: bool) -> None:
    settings = RedisSettings.from_env(Path("m"), {"RECSVC_REDIS_CLUSTER": value})
    assert settings.cluster is expected


@pytest.mark.parametrize("value", ["2", "cluster", "on"])
def test_a_bad_redis_cluster_is_refused_naming_it(value: str) -> None:
    with pytest.raises(SettingsError, match="RECSVC_REDIS_CLUSTER"):
        RedisSettings.from_env(Path("m"), {"RECSVC_REDIS_CLUSTER": value})
    with pytest.raises(ConfigError, match="RECSVC_REDIS_CLUSTER"):
        ServeConfig.from_env({"RECSVC_REDIS_CLUSTER": value})


def test_redis_cluster_1_makes_the_server_use_the_cluster_client(
    redis_process: RedisProcess, served: Served, tmp_path: Path
) -> None:
    env = {"REDIS_URL": redis_process.url, "RECSVC_REDIS_NAMESPACE": new_namespace()}
    plain = feature_store(config_from(env, tmp_path))
    assert plain is not None
    try:
        assert plain.writer.ping() and not plain.cluster
    finally:
        plain.close()
    # The same single-node Redis is no cluster: the cluster client asks it for its slots,
    # and the server refuses to start, saying why (it used to die with a traceback).
    cluster = config_from({**env, "RECSVC_REDIS_CLUSTER": "1"}, tmp_path)
    with pytest.raises(SettingsError, match="Cluster mode is not enabled"):
        feature_store(cluster)
    with pytest.raises(ConfigError, match="RECSVC_REDIS_CLUSTER=1, but REDIS_URL"):
        start(replace(cluster, model_dir=served.model_dir))


def test_serve_with_redis_cluster_1_and_no_cluster_exits_2_in_one_line(
    redis_process: RedisProcess, served_models: Path, tmp_path: Path
) -> None:
    env = {"REDIS_URL": redis_process.url, "RECSVC_REDIS_CLUSTER": "1"}
    args = ["--port", str(free_port()), "--metrics-port", "0", "--workers", "1"]
    result = subprocess.run(
        recsvc("serve", "--model-dir", str(served_models), *args),
        env=clean_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "cannot serve: RECSVC_REDIS_CLUSTER=1, but REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr


# -- RECSVC_REDIS_TIMEOUT_MS, RECSVC_REDIS_WRITE_TIMEOUT_MS ------------------------------------


def test_redis_timeouts_reach_the_serving_clients(served: Served, tmp_path: Path) -> None:
    env = {
        "REDIS_URL": served.redis_url,
        "RECSVC_REDIS_TIMEOUT_MS": "37",
        "RECSVC_REDIS_WRITE_TIMEOUT_MS": "4321.5",
    }
    config = config_from(env, tmp_path)
    assert (config.redis.read_timeout_ms, config.redis.write_timeout_ms) == (37.0, 4321.5)
    store = feature_store(config)
    assert store is not None
    try:
        assert store.reader.connection_pool.connection_kwargs["socket_timeout"] == 0.037
        assert store.writer.connection_pool.connection_kwargs["socket_timeout"] == 4.3215
    finally:
        store.close()
    defaults = config_from({"REDIS_URL": served.redis_url}, tmp_path).redis
    assert (defaults.read_timeout_ms, defaults.write_timeout_ms) == (50.0, 2000.0)


@pytest.mark.parametrize("name", ["RECSVC_REDIS_TIMEOUT_MS", "RECSVC_REDIS_WRITE_TIMEOUT_MS"])
@pytest.mark.parametrize("value", ["0", "-5", "fast", "nan", "1ms"])
def test_a_bad_redis_timeout_is_refused_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        ServeConfig.from_env({name: value})


# -- tokens, TLS files, limits -----------------------------------------------------------------


@pytest.mark.parametrize("entry", ["tok=admin+", "tok=+admin", "tok=recommend++events", "tok=+"])
def test_a_token_entry_with_an_empty_scope_is_refused(entry: str) -> None:
    with pytest.raises(ConfigError, match="RECSVC_AUTH_TOKENS"):
        ServeConfig.from_env({"RECSVC_AUTH_TOKENS": entry})


@pytest.mark.parametrize(
    ("text", "rate", "burst"),
    [("100", 100.0, 200.0), ("100/s", 100.0, 200.0), ("5/s:7", 5.0, 7.0), ("0.2:1", 0.2, 1.0)],
)
def test_rate_limit_is_read(text: str, rate: float, burst: float) -> None:
    limit = ServeConfig.from_env({"RECSVC_RATE_LIMIT": text}).rate_limit
    assert limit is not None and (limit.rate, limit.burst) == (rate, burst)
    assert ServeConfig.from_env({"RECSVC_RATE_LIMIT": "0"}).rate_limit is None


@pytest.mark.parametrize("text", ["-1", "fast", "10/m", "10:0", "10:x", "inf", "nan", "1:nan"])
def test_a_bad_rate_limit_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ConfigError, match="RECSVC_RATE_LIMIT"):
        ServeConfig.from_env({"RECSVC_RATE_LIMIT": text})


def test_max_concurrent_rpcs_is_read() -> None:
    assert ServeConfig.from_env({"RECSVC_MAX_CONCURRENT_RPCS": "7"}).concurrency_limit == 7
    assert ServeConfig.from_env({"RECSVC_THREADS": "3"}).concurrency_limit == 48
    with pytest.raises(ConfigError, match="RECSVC_MAX_CONCURRENT_RPCS"):
        ServeConfig.from_env({"RECSVC_MAX_CONCURRENT_RPCS": "-1"})
    with pytest.raises(ConfigError, match="RECSVC_MAX_CONCURRENT_RPCS"):
        ServeConfig.from_env({"RECSVC_MAX_CONCURRENT_RPCS": "many"})


def test_tls_files_that_are_not_usable_say_so(served: Served, tmp_path: Path) -> None:
    pem = tmp_path / "garbage.pem"
    pem.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    text = tmp_path / "key.txt"
    text.write_text("just text\n")
    directory = tmp_path / "a-directory"
    directory.mkdir()
    cases = [
        (directory, pem, "RECSVC_TLS_KEY: cannot read"),
        (text, pem, "RECSVC_TLS_KEY: " + str(text) + " is not a PEM file"),
        (pem, text, "RECSVC_TLS_CERT: " + str(text) + " is not a PEM file"),
        (pem, pem, "not a matching PEM certificate and private key"),
    ]
    for key, cert, message in cases:
        env = {"RECSVC_TLS_KEY": str(key), "RECSVC_TLS_CERT": str(cert)}
        with pytest.raises(ConfigError) as info:
            start(config_from(env, served.model_dir)).stop(grace=0)
        assert message in str(info.value)

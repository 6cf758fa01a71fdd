# mypy: disable-error-code="no-untyped-call"
"""Nobody let in: every RPC of every service (read from the proto's descriptors) refused
without a token, with a wrong one, with each scope but its own and with two authorization
headers; tokens never written to a log; per-token rate limits answering RESOURCE_EXHAUSTED
with retry-after.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis_fixtures import new_namespace

from feature_store.embedded import KEEPER_LOG
from recsvc.config import ServeConfig
from recsvc.server import Running, start
from recsvc.services import PUBLIC, SCOPES, public_may_call
from recsvc.v1 import recommender_pb2 as pb
from reliability.conftest import NewServe, Served
from reliability.rpcs import ROOT_TOKEN, RPCS, SCOPE_TOKENS, Metadata, Rpc, bearer, call
from reliability.serve_process import ServeProcess, settle

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED

NO_ACCESS: dict[str, Metadata] = {
    "no-metadata": (),
    "empty-header": (("authorization", ""),),
    "no-scheme": (("authorization", ROOT_TOKEN),),
    "basic-scheme": (("authorization", f"Basic {ROOT_TOKEN}"),),
    "bearer-nothing": (("authorization", "Bearer "),),
    "unknown-token": bearer("not-a-token-we-gave-anyone"),
    "token-prefix": bearer(ROOT_TOKEN[:-1]),
    "token-plus-one": bearer(ROOT_TOKEN + "x"),
    "other-header": (("x-authorization", f"Bearer {ROOT_TOKEN}"),),
}


@pytest.mark.parametrize("rpc", RPCS, ids=str)
@pytest.mark.parametrize("metadata", NO_ACCESS.values(), ids=NO_ACCESS.keys())
def test_every_rpc_refuses_a_caller_without_a_valid_token(
    served: Served, rpc: Rpc, metadata: Metadata
) -> None:
    answer = call(served.channel, rpc, b"", metadata)
    assert answer.code == UNAUTHENTICATED, (answer.code, answer.details)
    assert ROOT_TOKEN not in answer.details


# `public` may call some RPCs of other scopes by design (tests/test_public_scope.py).
WRONG_SCOPES = [
    (rpc, scope)
    for rpc in RPCS
    for scope in SCOPES
    if scope != rpc.scope and not (scope == PUBLIC and public_may_call(rpc.path))
]


@pytest.mark.parametrize(
    ("rpc", "scope"), WRONG_SCOPES, ids=[f"{r}-with-{s}" for r, s in WRONG_SCOPES]
)
def test_every_rpc_refuses_a_token_of_another_scope(served: Served, rpc: Rpc, scope: str) -> None:
    answer = call(served.channel, rpc, b"", bearer(SCOPE_TOKENS[scope]))
    assert answer.code == PERMISSION_DENIED, (answer.code, answer.details)
    assert f"'{rpc.scope}' scope" in answer.details


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_every_rpc_lets_its_own_scope_in(served: Served, rpc: Rpc) -> None:
    answer = call(served.channel, rpc, b"", bearer(SCOPE_TOKENS[rpc.scope]))
    assert answer.code not in (UNAUTHENTICATED, PERMISSION_DENIED), answer.details


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_two_authorization_headers_are_refused(served: Served, rpc: Rpc) -> None:
    # Which one would a proxy in front have checked? The server refuses to guess.
    for metadata in (
        (*bearer(ROOT_TOKEN), *bearer(ROOT_TOKEN)),
        (*bearer("not-a-token"), *bearer(ROOT_TOKEN)),
        (*bearer(ROOT_TOKEN), *bearer("not-a-token")),
    ):
        answer = call(served.channel, rpc, b"", metadata)
        assert answer.code == UNAUTHENTICATED, (answer.code, answer.details)
        assert "2 authorization headers" in answer.details


def test_health_needs_no_token(served: Served) -> None:
    reply = health_pb2_grpc.HealthStub(served.channel).Check(
        health_pb2.HealthCheckRequest(service="recsvc.v1.Recommender"), timeout=10
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


# -- rate limits -------------------------------------------------------------------------------


@pytest.fixture
def limited(tmp_path: Path, served: Served) -> Iterator[Running]:
    """A server whose tokens may make 3 calls at once, then one every 5 s (RECSVC_RATE_LIMIT
    parsed from the environment as `recsvc serve` does)."""
    env = {
        "RECSVC_RATE_LIMIT": "0.2/s:3",
        "RECSVC_AUTH_TOKENS": f"a-token={'+'.join(SCOPES)},b-token={'+'.join(SCOPES)}",
        "REDIS_URL": served.redis_url,
        "RECSVC_REDIS_NAMESPACE": new_namespace(),
    }
    config = ServeConfig.from_env(
        env, model_dir=served.model_dir, port=0, metrics_port=0, http_port=0, workers=1
    )
    assert config.rate_limit is not None and config.rate_limit.burst == 3
    running = start(config)
    yield running
    running.stop(grace=0)


def test_a_token_over_its_rate_limit_gets_resource_exhausted_with_retry_after(
    limited: Running,
) -> None:
    info = "/recsvc.v1.Admin/GetModelInfo"
    profile = "/recsvc.v1.Recommender/GetCustomerProfile"
    request = pb.GetCustomerProfileRequest(customer_id="C-1").SerializeToString()
    with grpc.insecure_channel(f"127.0.0.1:{limited.port}") as channel:
        a, b = bearer("a-token"), bearer("b-token")
        # The bucket is per token, across services.
        assert [call(channel, info, b"", a).code for _ in range(2)] == [grpc.StatusCode.OK] * 2
        assert call(channel, profile, request, a).code == grpc.StatusCode.OK
        refused = call(channel, profile, request, a)
        assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "rate limit of 0.2 calls/s for this token exceeded" in refused.details
        assert refused.retry_after is not None and 1 <= int(refused.retry_after) <= 5
        assert "a-token" not in refused.details
        assert call(channel, info, b"", a).code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Another token has its own bucket; health is not limited.
        assert call(channel, info, b"", b).code == grpc.StatusCode.OK
        for _ in range(5):
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING


# -- tokens never in logs ----------------------------------------------------------------------


def exercise(port: int, token: str, wrong: str) -> dict[grpc.StatusCode, int]:
    """Authenticated calls to every RPC, and rejected ones with ``wrong`` in each place a
    token can be sent; the count of each status."""
    seen: dict[grpc.StatusCode, int] = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for rpc in RPCS:
            payloads = [b"", rpc.request_class().SerializeToString(), b"\xff" * 11]
            for payload in payloads:
                for metadata in (
                    bearer(token),
                    bearer(wrong),
                    (("authorization", wrong),),
                    (("authorization", f"Basic {wrong}"),),
                    (*bearer(token), *bearer(wrong)),
                ):
                    code = call(channel, rpc, payload, metadata).code
                    seen[code] = seen.get(code, 0) + 1
    return seen


def logs_of(serve: ServeProcess) -> dict[str, str]:
    files = [serve.stdout, serve.stderr, serve.redis_dir / KEEPER_LOG]
    files += [serve.redis_dir / "redis.log"]
    return {f.name: f.read_text(errors="replace") for f in files if f.exists()}


def test_configured_tokens_never_reach_the_logs(new_serve: NewServe) -> None:
    token = "tok-" + "S3cr3t" * 4
    wrong = "wrong-" + "Gu3ss" * 4
    serve = new_serve(
        env={"RECSVC_AUTH_TOKENS": f"{token}=recommend+events+admin+privacy"},
        verbose=True,  # debug logging: the most a log ever says
    )
    serve.start()
    seen = exercise(serve.port, token, wrong)
    serve.kill_group(signal.SIGTERM)
    settle(serve.redis_dir)  # the keeper has written its last line
    assert seen[grpc.StatusCode.OK] and seen[UNAUTHENTICATED]
    assert seen[grpc.StatusCode.INVALID_ARGUMENT]
    logs = logs_of(serve)
    assert '"rpc":"ReloadModel"' in logs["serve.err"]  # the calls were logged
    for name, text in logs.items():
        for secret in (token, wrong, token[4:16], wrong[6:18]):
            assert secret not in text, f"{secret[:8]}... in {name}"


def test_the_dev_token_is_printed_once_at_start_and_never_logged(
    new_serve: NewServe, served_models: Path
) -> None:
    # No tokens on loopback: a development token.
    serve = new_serve(env={"RECSVC_AUTH_TOKENS": ""}, verbose=True)
    serve.start()
    token = (served_models.parent / "dev-token").read_text().strip()
    assert len(token) >= 24
    seen = exercise(serve.port, token, token[:-2] + "zz")
    serve.kill_group(signal.SIGTERM)
    settle(serve.redis_dir)
    assert seen[grpc.StatusCode.OK] and seen[UNAUTHENTICATED]
    logs = logs_of(serve)
    # By design (docs/api.md, "Development token"): printed once on stdout, for the person
    # who started the server; never in the log lines on stderr or anywhere else.
    banner = re.findall(r"development token \(all scopes.*\n\s+(\S+)", logs["serve.out"])
    assert banner == [token]
    assert logs["serve.out"].count(token) == 1
    for name, text in logs.items():
        if name != "serve.out":
            assert token not in text and token[:-2] not in text, name

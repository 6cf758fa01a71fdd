# mypy: disable-error-code="no-untyped-call"
"""gRPC test helpers: the tokens every in-process server accepts, its config, expected-error
calls, event ids, Prometheus samples, channel/stub fixtures, and the environment and command
of a `recsvc` subprocess.

conftest.py registers this module as a plugin: ``channel``, ``rec_stub``, ``events_stub`` and
``admin_stub`` reach every test module without an import. They are module-scoped and talk to
the ``server`` fixture (a :class:`recsvc.server.Running`) the test module defines. The
generated stubs (recsvc.v1.*_pb2_grpc) are unannotated, hence the mypy line above.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from recsvc.config import ServeConfig
from recsvc.server import Running
from recsvc.services import SCOPES
from recsvc.v1 import recommender_pb2_grpc as pb_grpc

Metadata = tuple[tuple[str, str], ...]

TOKENS = {
    "rec-token": frozenset({"recommend"}),
    "events-token": frozenset({"events"}),
    "admin-token": frozenset({"admin"}),
    "privacy-token": frozenset({"privacy"}),
    "all-token": frozenset({"recommend", "events", "admin"}),
    "root-token": frozenset(SCOPES),
}
REC: Metadata = (("authorization", "Bearer rec-token"),)
EVENTS: Metadata = (("authorization", "Bearer events-token"),)
ADMIN: Metadata = (("authorization", "Bearer admin-token"),)
PRIVACY: Metadata = (("authorization", "Bearer privacy-token"),)
ALL: Metadata = (("authorization", "Bearer all-token"),)


def serve_config(model_dir: Path, **overrides: Any) -> ServeConfig:
    """A one-process server on a free loopback port with TOKENS, HTTP off; no feature store
    unless ``redis`` is given (redis_fixtures.serve_config wires the session's Redis)."""
    values: dict[str, Any] = {
        "model_dir": model_dir,
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": 0,
        "http_port": 0,
        "workers": 1,
        "threads": 8,
        "auth_tokens": TOKENS,
        "reload_interval": 60.0,
    }
    values.update(overrides)
    return ServeConfig(**values)


def rpc_error(fn: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """Call ``fn``, expect an RPC error, return its status code and details."""
    with pytest.raises(grpc.RpcError) as info:
        fn()
    err = info.value
    assert isinstance(err, grpc.Call)
    return err.code(), err.details() or ""


def new_id() -> str:
    """A fresh event id (events are deduplicated by id)."""
    return uuid.uuid4().hex


def now_ms() -> int:
    return int(time.time() * 1000)


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    """A Prometheus sample of this process (the in-process servers' metrics); 0 if unset."""
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


@pytest.fixture(scope="module")
def channel(server: Running) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def rec_stub(channel: grpc.Channel) -> Any:
    return pb_grpc.RecommenderStub(channel)


@pytest.fixture(scope="module")
def events_stub(channel: grpc.Channel) -> Any:
    return pb_grpc.EventsStub(channel)


@pytest.fixture(scope="module")
def admin_stub(channel: grpc.Channel) -> Any:
    return pb_grpc.AdminStub(channel)


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """This environment without the caller's recsvc and Redis settings, plus ``extra``: for a
    `recsvc` subprocess. No HTTP port unless a test asks (``RECSVC_HTTP_PORT``): the default
    8080 would collide between servers."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RECSVC_", "PROMETHEUS_")) and k != "REDIS_URL"
    }
    env.update(OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1", TMPDIR=str(tmp))
    env.update(RECSVC_HTTP_PORT="0")
    env.update(extra)
    return env


def recsvc(*args: str) -> list[str]:
    """The command line of ``recsvc ARGS`` with this interpreter."""
    return [sys.executable, "-m", "recsvc.cli", *args]

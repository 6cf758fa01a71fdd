"""Fixtures of the reliability suite (tests/reliability, docs/reliability.md).

Tests marked ``long`` (soak, overload, many fuzzed examples) run only in
`make test-reliability`; pyproject's addopts leaves them out of `make test`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from redis_fixtures import new_namespace, start_server
from serving_fixtures import add_copy, trained

from feature_store.embedded import EmbeddedRedis
from recsvc.server import Running
from reliability.rpcs import TOKENS
from reliability.serve_process import ServeProcess, settle

ROOT = Path(__file__).resolve().parents[2]
VERSION = "20260101T000000Z-served"


@pytest.fixture
def served_models(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory of this test alone (var/models), the shared trained bundle
    published in it; the embedded Redis goes beside it (var/redis)."""
    model_dir = tmp_path / "var" / "models"
    add_copy(model_dir, trained(tmp_path_factory, "exact"), VERSION, publish=True)
    return model_dir


NewServe = Callable[..., ServeProcess]


@pytest.fixture
def new_serve(served_models: Path, tmp_path: Path) -> Iterator[NewServe]:
    """Make `recsvc serve` subprocesses (ServeProcess keyword arguments) of the test's model
    directory and embedded Redis; at teardown each is killed if still running, and the
    embedded Redis must have stopped with its last user."""
    started: list[ServeProcess] = []

    def make(**kwargs: Any) -> ServeProcess:
        serve = ServeProcess(
            served_models, served_models.parent / "redis", tmp_path / "logs", **kwargs
        )
        started.append(serve)
        return serve

    yield make
    for serve in started:
        if serve.process is not None and serve.process.poll() is None:
            serve.kill_group()
        settle(serve.redis_dir)


@pytest.fixture
def serve(new_serve: NewServe) -> ServeProcess:
    """One `recsvc serve` with one worker, not started yet."""
    return new_serve()


@dataclass(frozen=True)
class Served:
    """An in-process server with every service working: the model, the session's Redis
    (a namespace of its own), the sample offer catalog, the tokens of reliability.rpcs."""

    running: Running
    model_dir: Path
    namespace: str
    redis_url: str
    channel: grpc.Channel

    @property
    def port(self) -> int:
        return self.running.port


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, embedded_redis: EmbeddedRedis
) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("reliability-served")
    model_dir = home / "models"
    add_copy(model_dir, trained(tmp_path_factory, "exact"), VERSION, publish=True)
    offers = home / "offers.yaml"
    shutil.copy(ROOT / "examples" / "offers.yaml", offers)
    namespace = new_namespace()
    running = start_server(
        model_dir, embedded_redis.url, namespace, auth_tokens=TOKENS, offers=offers
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    yield Served(running, model_dir, namespace, embedded_redis.url, channel)
    channel.close()
    running.stop(grace=1.0)

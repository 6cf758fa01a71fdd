# mypy: disable-error-code="no-untyped-call"
"""`recsvc serve` as operators run it: a subprocess in a session of its own (so a test can
kill its whole process group, as a crashed supervisor or an OOM kill would), with the
embedded Redis of RECSVC_REDIS_DIR, and the processes that serve it counted with psutil.

The generated stubs (recsvc.v1.*_pb2_grpc) are unannotated, hence the mypy line above.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_helpers import TOKENS, clean_env, recsvc
from serving_fixtures import free_port

from feature_store.embedded import KEEPER_PID, SERVER_PID, socket_path

ROOT = Path(__file__).resolve().parents[2]
TOKENS_TEXT = ",".join(f"{t}={'+'.join(sorted(s))}" for t, s in TOKENS.items())


def redis_servers(data_dir: Path) -> list[psutil.Process]:
    """Every redis-server of ``data_dir``, found by its working directory (redis-server
    changes into its --dir) or its socket path on the command line, whoever started it."""
    where = data_dir.resolve()
    sock = str(socket_path(data_dir))
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "cwd"]):
        info = proc.info
        if "redis-server" not in (info["name"] or ""):
            continue
        cmdline = " ".join(info["cmdline"] or ())
        if info["cwd"] == str(where) or sock in cmdline:
            found.append(proc)
    return found


def keepers(data_dir: Path) -> list[psutil.Process]:
    """Every `python -m feature_store.keeper` of ``data_dir``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "feature_store.keeper" in cmdline and str(data_dir) in cmdline:
            found.append(proc)
    return found


def one_keeper(data_dir: Path, timeout: float = 10.0) -> None:
    """Until exactly one keeper of ``data_dir`` runs: a new keeper detaches by forking, and
    its first process may take a moment to exit on a busy machine."""
    wait_until(f"one keeper of {data_dir}", lambda: len(keepers(data_dir)) == 1, timeout)


def pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def gone(pid: int) -> bool:
    """True when ``pid`` runs no more (a zombie waiting for init to reap it is gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(what: str, ok: Callable[[], object], timeout: float, poll: float = 0.05) -> float:
    """Seconds until ``ok()`` is true; AssertionError naming ``what`` after ``timeout``."""
    began = time.monotonic()
    while not ok():
        assert time.monotonic() - began < timeout, f"{what}: not within {timeout:.0f} s"
        time.sleep(poll)
    return time.monotonic() - began


def health(port: int, service: str = "", timeout: float = 5.0) -> int:
    """The health status of ``service`` (grpc.health.v1), or -1 when nothing answers."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return -1
        return int(reply.status)


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class ServeProcess:
    """`recsvc serve --model-dir MODEL_DIR` on a fixed loopback port (the same one across
    restarts), tokens of grpc_helpers.TOKENS, embedded Redis in ``redis_dir``."""

    model_dir: Path
    redis_dir: Path
    logs: Path
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    verbose: bool = False  # debug logging (recsvc -v)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def stdout(self) -> Path:
        return self.logs / "serve.out"

    @property
    def stderr(self) -> Path:
        return self.logs / "serve.err"

    def environment(self) -> dict[str, str]:
        extra = {"RECSVC_REDIS_DIR": str(self.redis_dir), "RECSVC_AUTH_TOKENS": TOKENS_TEXT}
        extra.update(self.env)
        return clean_env(self.logs, **extra)

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait until it answers health checks; returns the seconds that took.
        Output of every start is appended to ``stdout`` and ``stderr``."""
        began = time.monotonic()
        self.start_in_background()
        deadline = began + timeout
        while health(self.port, timeout=1.0) != SERVING:
            assert self.process is not None
            code = self.process.poll()
            assert code is None, f"recsvc serve exited {code}: {self.tail()}"
            assert time.monotonic() < deadline, f"recsvc serve not serving: {self.tail()}"
            time.sleep(0.05)
        return time.monotonic() - began

    def start_in_background(self) -> None:
        """Start, without waiting for anything."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.logs.mkdir(parents=True, exist_ok=True)
        args = ["-v"] if self.verbose else []
        args += ["serve", "--model-dir", str(self.model_dir), "--port", str(self.port)]
        args += ["--metrics-port", "0", "--workers", str(self.workers)]
        with self.stdout.open("ab") as out, self.stderr.open("ab") as err:
            self.process = subprocess.Popen(
                recsvc(*args),
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=ROOT,
                start_new_session=True,
            )
        self.starts += 1

    def tail(self) -> str:
        return self.stderr.read_text()[-3000:] if self.stderr.exists() else ""

    def processes(self) -> list[psutil.Process]:
        """The server's own processes: the parent and its workers."""
        try:
            parent = psutil.Process(self.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill_group(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """``sig`` to the whole process group (the parent, its workers), then reap."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM and wait (kill -9 of the group if it hangs); the exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process is not None else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill_group()
            raise AssertionError(f"recsvc serve ignored SIGTERM: {self.tail()}") from None

    @property
    def redis_pid(self) -> int | None:
        return pid_in(self.redis_dir / SERVER_PID)

    @property
    def keeper_pid(self) -> int | None:
        return pid_in(self.redis_dir / KEEPER_PID)

    def run_cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Another recsvc command with this server's environment (same Redis)."""
        return subprocess.run(
            recsvc(*args),
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )


def settle(data_dir: Path, timeout: float = 40.0) -> None:
    """Until no redis-server and no keeper of ``data_dir`` is left (each stops with its last
    user); a test calls this at its end so none outlives it."""
    wait_until(
        f"the embedded Redis of {data_dir} to stop",
        lambda: not redis_servers(data_dir) and not keepers(data_dir),
        timeout,
    )

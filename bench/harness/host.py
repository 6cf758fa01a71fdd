"""Processes on this host: timed child processes and the CPU time they use, ours and others'."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Timed:
    seconds: float
    peak_rss_gib: float
    stdout: str


def run_timed(args: list[str], env: dict[str, str] | None = None) -> Timed:
    """Run a child process; wall time and its peak resident memory (from wait4)."""
    full_env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, env=full_env, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stdout.write(out)
        raise SystemExit(f"{' '.join(args)} failed with exit code {proc.returncode}")
    return Timed(seconds, usage.ru_maxrss / 2**20, out)


def run_tree_sampled(args: list[str], env: dict[str, str] | None = None) -> Timed:
    """Like run_timed, but the peak is of the whole process tree's summed RSS, sampled every
    0.2 s: a run that starts a JVM (Spark) holds memory in a child that wait4 may not see."""
    full_env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    start = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=devnull, env=full_env)
    root = psutil.Process(proc.pid)
    peak = 0
    chunks: list[bytes] = []
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    while proc.poll() is None:
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                total += p.memory_info().rss
        except psutil.Error:
            pass
        peak = max(peak, total)
        if data := proc.stdout.read():
            chunks.append(data)
        time.sleep(0.2)
    chunks.append(proc.stdout.read() or b"")
    seconds = time.perf_counter() - start
    out = b"".join(chunks).decode()
    if proc.returncode != 0:
        sys.stdout.write(out)
        raise SystemExit(f"{' '.join(args)} failed with exit code {proc.returncode}")
    return Timed(seconds, peak / 2**30, out)


def recsvc_bin() -> str:
    """The recsvc console script of this interpreter's environment."""
    return str(Path(sys.executable).with_name("recsvc"))


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User+system CPU seconds of ``procs`` (those gone meanwhile count nothing)."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def host_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole host since boot, every core and every user."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    return sum(t) - idle, sum(t)


def sleep_until(t: float) -> None:
    """Sleep until time.monotonic() reaches ``t`` (load generators share that clock)."""
    time.sleep(max(0.0, t - time.monotonic()))


class Others:
    """Cores kept busy by processes other than ``ours`` and their children (redis-cli,
    redis-benchmark, Redis's snapshot forks) over a span: someone else's work on this shared
    host, measured so that a disturbed figure can be told from a clean one."""

    def __init__(self, ours: list[psutil.Process]) -> None:
        self.ours = ours
        self.cores = math.nan

    @staticmethod
    def _ours(procs: list[psutil.Process]) -> float:
        """CPU seconds of ``procs``, their reaped children and their running descendants."""
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
                running = p.children(recursive=True)
            except psutil.Error:
                continue
            total += cpu_seconds(running)
        return total

    def __enter__(self) -> Others:
        self._busy, _ = host_busy()
        self._cpu = self._ours(self.ours)
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, _ = host_busy()
        other = (busy - self._busy) - (self._ours(self.ours) - self._cpu)
        self.cores = max(0.0, other / (time.perf_counter() - self._t))

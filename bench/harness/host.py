"""Processes on this host: timed child processes and the CPU time they use."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass


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

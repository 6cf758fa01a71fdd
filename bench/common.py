"""Shared bits of the benchmarks: machine description and timed child processes."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


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


def write_results(out: Path, report: str, command: str, data: dict[str, Any]) -> None:
    """Print the report; keep it as out/results.md and the figures as out/results.json."""
    print()
    print(report)
    (out / "results.md").write_text(report + "\n")
    header = {"date": today(), "machine": machine(), "command": command}
    (out / "results.json").write_text(json.dumps(header | data, indent=1))

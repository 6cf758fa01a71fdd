"""Where a server worker's time goes: `py-spy record` on one process (collapsed stacks, the
"raw" format), and the samples split by the part of the serving path they are in.

A stack of a thread gRPC does not run (health and reload polls, the HTTP server, flush
loops) is a background thread's. Otherwise it belongs to the innermost frame of the project
(recsvc, feature_store, formats) unless a library it calls below that frame says more
(redis-py: the feature-store read; the logging package: logging; protobuf: conversion;
prometheus_client: the metrics interceptor; gRPC itself). Stacks with no project frame are
gRPC's own (its C-core, its poller and thread pool).

Three views of one worker, recorded at once (all --nonblocking: never paused):
- active: py-spy's default, the threads the OS has running or runnable (on a busy host,
  runnable includes waiting for a core);
- GIL: --gil, the thread holding the GIL: the worker's Python time, one thread at a time;
- wall: --idle, every sample of the threads while they run a request (a frame of gRPC's
  thread-pool function), waits for Redis, the GIL and the network included.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

GRPC = "gRPC / C-core + thread hand-off"
INTERCEPTORS = "interceptors (auth, metrics)"
REDIS = "feature-store read (Redis)"
ENGINE = "engine (faiss, numpy)"
FOLD_IN = "fold-in"
LOGGING = "logging"
PROTOBUF = "protobuf conversion"
SERVICER = "servicer and other recsvc code"
BACKGROUND = "background threads (polls, HTTP server)"
OTHER = "other"
PARTS = (
    GRPC,
    INTERCEPTORS,
    REDIS,
    ENGINE,
    FOLD_IN,
    LOGGING,
    PROTOBUF,
    SERVICER,
    BACKGROUND,
    OTHER,
)

PROJECT = ("recsvc/", "feature_store/", "formats/")
# The innermost project frame's file decides, first match wins; else SERVICER.
PROJECT_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (LOGGING, ("recsvc/logs.py",)),
    (REDIS, ("feature_store/",)),
    (FOLD_IN, ("recsvc/fold_in.py",)),
    (ENGINE, ("recsvc/engine/",)),
    (PROTOBUF, ("recsvc/convert.py", "recsvc/v1/")),
    (
        INTERCEPTORS,
        ("recsvc/interceptors.py", "recsvc/auth.py", "recsvc/metrics.py", "recsvc/ratelimit.py"),
    ),
)
# Libraries that name the part wherever they are called from (below the project frame).
LIBRARY_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (REDIS, ("redis/",)),
    (LOGGING, ("logging/",)),
    (PROTOBUF, ("google/protobuf/", "serialize (grpc/_common.py", "deserialize (grpc/_common.py")),
    (INTERCEPTORS, ("prometheus_client/",)),
    (GRPC, ("grpc/", "grpc_health/")),  # gRPC's API, and the health service's handler
)
GRPC_FRAMES = ("grpc", "threading.py", "concurrent/futures/", "queue.py")


def part_of(frames: list[str]) -> str:
    """The part of the serving path a stack (outermost frame first) is in."""
    inner = max((i for i, f in enumerate(frames) if _project(f)), default=-1)
    if inner >= 0 and not any("grpc/" in f for f in frames):
        return BACKGROUND
    below = frames[inner + 1 :]
    for part, patterns in LIBRARY_RULES:
        if any(p in f for f in below for p in patterns):
            return part
    if inner >= 0:
        for part, patterns in PROJECT_RULES:
            if any(p in frames[inner] for p in patterns):
                return part
        return SERVICER
    if any(g in f for f in frames for g in GRPC_FRAMES):
        return GRPC
    return OTHER


def _project(frame: str) -> bool:
    # py-spy writes a frame as "function (path/file.py:line)"; the path may be absolute.
    location = frame.rpartition(" (")[2]
    return any(location.startswith(p) or f"/{p}" in location for p in PROJECT)


def collapsed(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """(frames outermost first, samples) of py-spy's raw output: "a;b;c 12" per line. The
    first frame, py-spy's thread label ("thread (0x7f..)"/"process 123:..."), is dropped."""
    out = []
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames and (frames[0].startswith(("thread (", "process "))):
            frames = frames[1:]
        out.append((frames, int(count)))
    return out


@dataclass(frozen=True)
class Split:
    samples: dict[str, int]  # per part, every part of PARTS present

    @property
    def total(self) -> int:
        return sum(self.samples.values())

    def share(self, part: str) -> float:
        return self.samples[part] / self.total if self.total else float("nan")


def split_samples(stacks: list[tuple[list[str], int]], within: str = "") -> Split:
    """Samples per part; with ``within``, only the stacks with a frame containing it (e.g.
    the frame of gRPC's thread-pool function that runs one request)."""
    samples = dict.fromkeys(PARTS, 0)
    for frames, n in stacks:
        if not within or any(within in f for f in frames):
            samples[part_of(frames)] += n
    return Split(samples)


def py_spy() -> str:
    """The py-spy of this interpreter's environment (the test extra installs it)."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: `make install` (the test extra has it)")
    return found


VIEWS: dict[str, tuple[tuple[str, ...], str]] = {
    # name: (py-spy flags, the frame a stack must have to count)
    "active": ((), ""),
    "GIL": (("--gil",), ""),
    "wall": (("--idle",), "_unary_response_in_pool"),  # gRPC's thread-pool function of a call
}


def py_spy_command(pid: int, seconds: float, out: Path, view: str, rate: int = 200) -> list[str]:
    """`py-spy record` of one process into ``out`` (collapsed stacks) for one of VIEWS."""
    return [
        py_spy(),
        "record",
        *("--pid", str(pid), "--duration", str(max(1, round(seconds)))),
        *("--rate", str(rate), "--format", "raw", "--output", str(out)),
        "--nonblocking",
        *VIEWS[view][0],
    ]


def record(pid: int, seconds: float, out: Path, view: str) -> Split:
    """Profile ``pid`` for ``seconds`` and split its samples (py-spy's own output in out.log)."""
    command = py_spy_command(pid, seconds, out, view)
    with out.with_suffix(".log").open("w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not out.exists():
        raise SystemExit(
            f"py-spy failed ({done.returncode}): {out.with_suffix('.log').read_text()[-800:]}"
        )
    return split_samples(collapsed(out.read_text().splitlines()), VIEWS[view][1])

"""Measurement windows on a running `recsvc serve`: the load generators get their jobs, the
parent samples CPU time, the host's busy time and the server's metrics at every window's
edges, and the calls of one phase name (one or several windows) are pooled."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import psutil

from bench.harness.host import cpu_seconds, host_busy, sleep_until
from bench.harness.load import Job, LoadGenerators, Phase, PhaseResult
from bench.harness.report import ints
from bench.harness.servers import Server


@dataclass(frozen=True)
class Sample:
    server_cpu: float
    client_cpu: float
    busy: float
    total: float
    metrics: dict[str, tuple[float, float]]


def sample(server: Server, server_procs: list[psutil.Process], load: LoadGenerators) -> Sample:
    busy, total = host_busy()
    return Sample(cpu_seconds(server_procs), cpu_seconds(load.ps), busy, total, server.metrics())


@dataclass(frozen=True)
class Window:
    """What was sampled at one window's edges, and the connections held in its middle."""

    first: Sample
    last: Sample
    connections: str


def add_load_options(parser: argparse.ArgumentParser, seconds: float, warmup: float) -> None:
    """--concurrency, --seconds, --warmup, --clients and --channels, as the serving
    benchmarks take them."""
    parser.add_argument("--concurrency", type=ints, default=[1, 8, 32], help="default 1,8,32")
    parser.add_argument(
        "--seconds", type=float, default=seconds, help=f"window per point (default {seconds:g})"
    )
    parser.add_argument(
        "--warmup", type=float, default=warmup, help=f"per window (default {warmup:g})"
    )
    parser.add_argument(
        "--clients", type=int, default=1, help="load generator processes (default 1)"
    )
    parser.add_argument(
        "--channels", type=int, default=16, help="TCP connections in all (default 16)"
    )


def split_load(concurrency: int, clients: int, channels: int) -> list[tuple[int, int]]:
    """(callers, TCP connections) for each load generator process that takes part: the
    callers spread evenly over at most ``clients`` processes, each with at most its share of
    ``channels`` connections and at least one."""
    n = max(1, min(clients, concurrency))
    callers = [concurrency // n + (1 if i < concurrency % n else 0) for i in range(n)]
    return [(c, max(1, min(c, channels // n))) for c in callers]


def run_windows(
    server: Server, load: LoadGenerators, jobs: list[Job], also: list[psutil.Process] | None = None
) -> tuple[list[list[PhaseResult]], list[Window]]:
    """Send ``jobs[i]`` to load generator ``i`` (every job has the same phases), sample at
    each phase's window edges, and return each generator's results with the windows. The
    server's CPU is its process tree's and ``also``'s (e.g. its embedded redis-server)."""
    phases = jobs[0].phases
    for pipe, job in zip(load.pipes, jobs, strict=False):
        pipe.send(job)
    server_procs = server.processes() + (also or [])
    windows = []
    for phase in phases:
        begin, end = phase.window
        sleep_until(begin)
        first = sample(server, server_procs, load)
        sleep_until(begin + phase.seconds / 2)
        connections = server.connections()
        sleep_until(end)
        windows.append(Window(first, sample(server, server_procs, load), connections))
    results: list[list[PhaseResult]] = []
    for pipe in load.pipes[: len(jobs)]:
        reply = pipe.recv()
        if isinstance(reply, Exception):
            raise SystemExit(f"load generator failed: {reply!r}\n{server.tail()}")
        results.append(reply)
    return results, windows


@dataclass(frozen=True)
class Pooled:
    """The calls of every window of one phase name, from every load generator."""

    phase: Phase  # the first of them
    latencies_ms: np.ndarray
    seconds: float  # the windows' total length
    errors: dict[str, int]
    server_cpu_s: float
    client_cpu_s: float
    busy_s: float  # busy CPU seconds of the whole host (anyone's work)
    total_s: float  # CPU seconds the host had (cores x seconds)
    handler_s: float  # time inside the handler, from the server's histogram
    handled: float  # calls the histogram counted
    connections: str  # in the first window
    first_response: bytes = b""

    @property
    def calls(self) -> int:
        return len(self.latencies_ms)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else float("nan")

    def per_call_ms(self, seconds: float) -> float:
        return seconds / max(self.calls, 1) * 1e3

    @property
    def host_busy(self) -> float:
        return self.busy_s / max(self.total_s, 1e-9)

    @property
    def handler_ms(self) -> float:
        return self.handler_s / self.handled * 1e3 if self.handled > 0 else float("nan")


def pool(
    name: str, phases: list[Phase], results: list[list[PhaseResult]], windows: list[Window]
) -> Pooled:
    """Pool the windows of the phases called ``name``."""
    ks = [k for k, p in enumerate(phases) if p.name == name]
    if not ks:
        raise ValueError(f"no phase called {name!r}")
    per_client = [r[k] for r in results for k in ks]
    latencies = [r.latencies_ns for r in per_client]
    lat = np.concatenate(latencies) / 1e6 if latencies else np.zeros(0)
    errors: dict[str, int] = {}
    for result in per_client:
        for code, n in result.errors.items():
            errors[code] = errors.get(code, 0) + n
    method = phases[ks[0]].method.lstrip("/")
    seen = [
        (windows[k].first.metrics.get(method, (0.0, 0.0)), windows[k].last.metrics.get(method))
        for k in ks
    ]
    firsts = [r.first_response for r in per_client if r.first_response]

    def delta(attr: str) -> float:
        return float(
            sum(getattr(windows[k].last, attr) - getattr(windows[k].first, attr) for k in ks)
        )

    return Pooled(
        phase=phases[ks[0]],
        latencies_ms=lat,
        seconds=sum(phases[k].seconds for k in ks),
        errors=errors,
        server_cpu_s=delta("server_cpu"),
        client_cpu_s=delta("client_cpu"),
        busy_s=delta("busy"),
        total_s=delta("total"),
        handler_s=sum((b or a)[0] - a[0] for a, b in seen),
        handled=sum((b or a)[1] - a[1] for a, b in seen),
        connections=windows[ks[0]].connections,
        first_response=firsts[0] if firsts else b"",
    )

"""Serving latency and throughput: RecommendProducts next to an empty RPC (grpc.health.v1
Check) on the same `recsvc serve`, at several concurrency levels, for a 100k- and a 1M-product
catalog.

    python -m bench.serve [--catalogs 100k,1M] [--concurrency 1,8,32] [--workers 0,1]

Setup: the server is `recsvc serve` in a subprocess (its default workers = CPU count, then
--workers 1), RECSVC_AUTH_TOKENS set to a bench token, traffic to 127.0.0.1 only. The load
generator runs in its own process(es): one grpc.aio event loop each, closed-loop callers over
up to --channels TCP connections, requests pre-serialized and responses left unparsed. Both
RPCs of one concurrency level share those connections and run back to back (health first),
each with --warmup seconds then a --seconds window. Server and client CPU time and the host's
busy CPU are sampled at the window edges; the server-side handler time comes from the
server's own Prometheus histogram (recsvc_rpc_duration_seconds). Before the servers of a
catalog start, the same requests are replayed in this process without gRPC to split a call's
server CPU into its parts.

Bundles: 100k products = var/bench/scale/models (make it with `python -m bench.train_scale`);
1M products is trained once into var/bench/serve/models-1m (synthetic world of 300k customers,
1M products, 10 events each; about 4 minutes on 2 cores) and reused afterwards. Delete that
directory to retrain (e.g. after a change to training or to the bundle format).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.harness import machine, today, write_results
from bench.serve_bundle import (
    WORKDIR,
    Catalog,
    RequestMix,
    million_catalog,
    request_mix,
    scale_catalog,
)
from bench.serve_load import Job, Phase, PhaseResult, serve_jobs

TOKEN = "bench-serve-token"
RECOMMEND = "/recsvc.v1.Recommender/RecommendProducts"
HEALTH = "/grpc.health.v1.Health/Check"
RPC_NAMES = {RECOMMEND: "RecommendProducts", HEALTH: "health Check"}


@dataclass(frozen=True)
class Point:
    catalog: str
    workers: int
    rpc: str
    concurrency: int
    calls: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    handler_ms: float  # server-side mean, from the server's histogram
    server_cpu_ms: float  # per call, all server processes
    client_cpu_ms: float  # per call, all load generator processes
    host_busy: float  # share of all cores busy during the window (anyone's work)
    connections: str  # established connections per server worker, e.g. "9+7"
    errors: dict[str, int]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`recsvc serve` in its own session; stopped with SIGTERM (SIGKILL to its group if stuck)."""

    def __init__(self, catalog: Catalog, workers: int, log: Path) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.workers = workers
        self.log = log
        recsvc = str(Path(sys.executable).with_name("recsvc"))
        self.command = [
            recsvc,
            "serve",
            "--model-dir",
            str(catalog.model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--metrics-port",
            str(self.metrics_port),
            "--workers",
            str(workers),
        ]
        env = {
            **os.environ,
            "OPENBLAS_NUM_THREADS": "1",
            "RECSVC_AUTH_TOKENS": f"{TOKEN}=recommend",
            # The embedded feature store, where this recsvc has one, stays out of var/bench/scale.
            "RECSVC_REDIS_DIR": str(WORKDIR / "redis"),
        }
        log.parent.mkdir(parents=True, exist_ok=True)
        self._stream = log.open("w")
        self.process = subprocess.Popen(
            self.command,
            stdout=self._stream,
            stderr=subprocess.STDOUT,  # one JSON line per request: a file, never a pipe
            env=env,
            start_new_session=True,
        )

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 600.0) -> float:
        """Seconds until every worker logged that it serves."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"recsvc serve exited with {self.process.returncode}:\n{self.tail()}"
                )
            if self.log.read_text(errors="replace").count('"msg": "serving model') >= self.workers:
                return time.perf_counter() - start
            time.sleep(0.2)
        raise SystemExit(f"recsvc serve not ready after {timeout:.0f} s:\n{self.tail()}")

    def rss_gib(self) -> list[float]:
        out = []
        for p in self.workers_pids():
            try:
                if "redis" not in " ".join(p.cmdline()):
                    out.append(p.memory_info().rss / 2**30)
            except psutil.Error:
                continue
        return out

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def workers_pids(self) -> list[psutil.Process]:
        procs = self.processes()
        return procs if self.workers == 1 else procs[1:]

    def connections(self) -> str:
        counts = []
        for p in self.workers_pids():
            try:
                if "redis" in " ".join(p.cmdline()):
                    continue
                conns = p.net_connections(kind="tcp")
            except psutil.Error:
                continue
            n = sum(
                1
                for c in conns
                if c.laddr and c.laddr.port == self.port and c.status == psutil.CONN_ESTABLISHED
            )
            counts.append(n)
        return "+".join(str(n) for n in counts)

    def metrics(self) -> dict[str, tuple[float, float]]:
        """(sum, count) of recsvc_rpc_duration_seconds per method, OK answers."""
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        out: dict[str, list[float]] = {}
        for family in text_string_to_metric_families(text):
            if family.name != "recsvc_rpc_duration_seconds":
                continue
            for s in family.samples:
                if s.labels.get("code") != "OK":
                    continue
                entry = out.setdefault(s.labels["method"], [0.0, 0.0])
                if s.name.endswith("_sum"):
                    entry[0] += s.value
                elif s.name.endswith("_count"):
                    entry[1] += s.value
        return {k: (v[0], v[1]) for k, v in out.items()}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._stream.close()


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def host_busy() -> tuple[float, float]:
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    return sum(t) - idle, sum(t)


@dataclass
class Sample:
    server_cpu: float
    client_cpu: float
    busy: float
    total: float
    metrics: dict[str, tuple[float, float]]


class LoadGenerators:
    def __init__(self, n: int) -> None:
        ctx = get_context("spawn")  # a fresh interpreter: no gRPC state inherited
        self.pipes: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=serve_jobs, args=(child,), name="bench-serve-load")
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        self.ps = [psutil.Process(p.pid) for p in self.procs if p.pid is not None]

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for proc in self.procs:
            proc.join(timeout=10)


def sample(server: Server, server_procs: list[psutil.Process], load: LoadGenerators) -> Sample:
    busy, total = host_busy()
    return Sample(cpu_seconds(server_procs), cpu_seconds(load.ps), busy, total, server.metrics())


def sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.monotonic()))


def run_level(
    server: Server,
    load: LoadGenerators,
    catalog: Catalog,
    mix: RequestMix,
    concurrency: int,
    args: argparse.Namespace,
) -> list[Point]:
    """Health then RecommendProducts at one concurrency, on the same connections."""
    clients = min(len(load.pipes), concurrency)
    split = [
        concurrency // clients + (1 if i < concurrency % clients else 0) for i in range(clients)
    ]
    channels = [max(1, min(c, args.channels // clients)) for c in split]
    start = time.monotonic() + 1.5  # time to connect
    phases = []
    for method, requests in ((HEALTH, mix.health), (RECOMMEND, mix.recommend)):
        phases.append(Phase(RPC_NAMES[method], method, requests, start, args.warmup, args.seconds))
        start += args.warmup + args.seconds + 0.5
    for i in range(clients):
        load.pipes[i].send(
            Job(server.target, TOKEN, split[i], channels[i], phases, offset=i * 7919)
        )
    server_procs = server.processes()
    edges: list[tuple[Sample, Sample, str]] = []
    for phase in phases:
        begin, end = phase.window
        sleep_until(begin)
        first = sample(server, server_procs, load)
        sleep_until(begin + phase.seconds / 2)
        conns = server.connections()
        sleep_until(end)
        edges.append((first, sample(server, server_procs, load), conns))
    results: list[list[PhaseResult]] = []
    for i in range(clients):
        reply = load.pipes[i].recv()
        if isinstance(reply, Exception):
            raise SystemExit(f"load generator failed: {reply!r}\n{server.tail()}")
        results.append(reply)
    points = []
    for k, phase in enumerate(phases):
        per_client = [r[k] for r in results]
        lat = np.concatenate([r.latencies_ns for r in per_client]) / 1e6
        errors: dict[str, int] = {}
        for r in per_client:
            for code, n in r.errors.items():
                errors[code] = errors.get(code, 0) + n
        a, b, conns = edges[k]
        calls = len(lat)
        method = phase.method.lstrip("/")
        s0, n0 = a.metrics.get(method, (0.0, 0.0))
        s1, n1 = b.metrics.get(method, (0.0, 0.0))
        if phase.method == RECOMMEND:
            check_reply(per_client[0].first_response)
        points.append(
            Point(
                catalog=catalog.label,
                workers=server.workers,
                rpc=phase.name,
                concurrency=concurrency,
                calls=calls,
                seconds=phase.seconds,
                p50_ms=float(np.percentile(lat, 50)) if calls else float("nan"),
                p90_ms=float(np.percentile(lat, 90)) if calls else float("nan"),
                p99_ms=float(np.percentile(lat, 99)) if calls else float("nan"),
                handler_ms=(s1 - s0) / (n1 - n0) * 1e3 if n1 > n0 else float("nan"),
                server_cpu_ms=(b.server_cpu - a.server_cpu) / max(calls, 1) * 1e3,
                client_cpu_ms=(b.client_cpu - a.client_cpu) / max(calls, 1) * 1e3,
                host_busy=(b.busy - a.busy) / max(b.total - a.total, 1e-9),
                connections=conns,
                errors=errors,
            )
        )
    return points


def check_reply(raw: bytes) -> None:
    from recsvc.v1 import recommender_pb2 as pb

    reply = pb.RecommendProductsResponse.FromString(raw)
    if not reply.items or not reply.model_version:
        raise SystemExit(f"unexpected RecommendProducts answer: {reply}")


def fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def table(points: list[Point]) -> str:
    health = {
        (p.catalog, p.workers, p.concurrency): p.rate for p in points if p.rpc == "health Check"
    }
    lines = [
        "| catalog | server workers | RPC | concurrency | calls/s | p50 ms | p90 ms | p99 ms "
        "| RecommendProducts / health throughput | server handler ms | server CPU ms/call "
        "| client CPU ms/call | host CPU busy | connections per worker |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        ratio = ""
        if p.rpc == "RecommendProducts":
            h = health.get((p.catalog, p.workers, p.concurrency))
            ratio = f"{p.rate / h:.0%}" if h else "n/a"
        errors = f" ({sum(p.errors.values())} errors: {p.errors})" if p.errors else ""
        lines.append(
            f"| {p.catalog} | {p.workers} | {p.rpc}{errors} | {p.concurrency} | {p.rate:,.0f} "
            f"| {fmt(p.p50_ms)} | {fmt(p.p90_ms)} | {fmt(p.p99_ms)} | {ratio} "
            f"| {fmt(p.handler_ms, 3)} | {fmt(p.server_cpu_ms, 3)} | {fmt(p.client_cpu_ms, 3)} "
            f"| {p.host_busy:.0%} | {p.connections} |"
        )
    return "\n".join(lines)


def breakdown_table(rows: list[Any]) -> str:
    lines = [
        "| catalog | engine p50 ms | engine p99 ms | engine mean ms | of which FAISS search ms "
        "| calls searching the index | servicer (translation + engine + response) ms "
        "| JSON request log line ms (not in servicer) | parse request ms | serialize response ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in rows:
        lines.append(
            f"| {b.catalog} | {b.engine_p50_ms:.3f} | {b.engine_p99_ms:.3f} | {b.engine_ms:.3f} "
            f"| {b.search_ms:.3f} | {b.search_share:.0%} | {b.servicer_ms:.3f} | {b.log_ms:.3f} "
            f"| {b.parse_ms:.4f} | {b.serialize_ms:.4f} |"
        )
    return "\n".join(lines)


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--catalogs", default="100k,1M", help="100k and/or 1M (default %(default)s)"
    )
    parser.add_argument("--concurrency", type=ints, default=[1, 8, 32], help="default 1,8,32")
    parser.add_argument(
        "--workers",
        type=ints,
        default=[0, 1],
        help="server worker counts to run, 0 = recsvc's default (CPU count); default 0,1",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="window per point (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="per point (default 2)")
    parser.add_argument(
        "--clients", type=int, default=1, help="load generator processes (default 1)"
    )
    parser.add_argument(
        "--channels", type=int, default=16, help="TCP connections in all (default 16)"
    )
    parser.add_argument(
        "--category-share",
        type=float,
        default=0.2,
        help="requests filtered to one category (default 0.2)",
    )
    parser.add_argument("--no-inproc", action="store_true", help="skip the in-process breakdown")
    parser.add_argument("--out", type=Path, default=WORKDIR, help="results and server logs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "bench.serve", *(sys.argv[1:] if argv is None else argv)])
    began = time.perf_counter()
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    args.out.mkdir(parents=True, exist_ok=True)
    labels = [c.strip() for c in args.catalogs.split(",") if c.strip()]
    builders: dict[str, Callable[[], Catalog]] = {"100k": scale_catalog, "1M": million_catalog}
    unknown = [c for c in labels if c not in builders]
    if unknown:
        raise SystemExit(f"unknown catalog(s) {unknown}; choose from {list(builders)}")
    catalogs = [builders[c]() for c in labels]
    for c in catalogs:
        print(
            f"{c.label}: {c.bundle} ({c.products:,} products, {c.customers:,} customers, "
            f"index {c.index})",
            flush=True,
        )
    load = LoadGenerators(args.clients)
    points: list[Point] = []
    breakdowns = []
    starts: list[str] = []
    try:
        for catalog in catalogs:
            mix = request_mix(catalog, category_share=args.category_share)
            if not args.no_inproc:
                from bench.serve_inproc import breakdown

                b = breakdown(catalog, mix.recommend, args.out / "inproc-requests.log")
                breakdowns.append(b)
                print(f"  in-process: {b}", flush=True)
            for w in args.workers:
                workers = w or os.cpu_count() or 1
                log = args.out / f"server-{catalog.label}-w{workers}.log"
                server = Server(catalog, workers, log)
                try:
                    ready = server.wait_ready()
                    rss = ", ".join(f"{g:.1f}" for g in server.rss_gib())
                    starts.append(
                        f"{catalog.label}, {workers} worker(s): ready in {ready:.0f} s, "
                        f"RSS per worker {rss} GiB"
                    )
                    print(f"  {starts[-1]}", flush=True)
                    for c in args.concurrency:
                        level = run_level(server, load, catalog, mix, c, args)
                        for p in level:
                            print(
                                f"  {p.catalog} w{p.workers} {p.rpc:<17} c={p.concurrency:<3} "
                                f"{p.rate:8,.0f}/s  p50 {p.p50_ms:6.2f}  p99 {p.p99_ms:6.2f} ms"
                                f"  conns {p.connections}  errors {p.errors or 0}",
                                flush=True,
                            )
                        points.extend(level)
                finally:
                    server.stop()
                log.unlink(missing_ok=True)  # one line per request: large, and kept on failure
    finally:
        load.close()
    elapsed = time.perf_counter() - began
    report = render(args, catalogs, points, breakdowns, starts, command, elapsed)
    write_results(
        args.out,
        report,
        command,
        {
            "points": [asdict(p) | {"calls_per_s": p.rate} for p in points],
            "inproc": [asdict(b) for b in breakdowns],
        },
    )


def render(
    args: argparse.Namespace,
    catalogs: list[Catalog],
    points: list[Point],
    breakdowns: list[Any],
    starts: list[str],
    command: str,
    elapsed: float,
) -> str:
    cores = os.cpu_count() or 1
    lines = [
        f"## Serving benchmark ({today()})",
        "",
        f"- machine: {machine()}",
        f"- command: `{command}` ({elapsed / 60:.1f} min)",
        "- bundles: "
        + "; ".join(
            f"{c.label}: {c.products:,} products, {c.customers:,} customers, index {c.index} "
            f"({c.bundle})"
            for c in catalogs
        ),
        f"- server: `recsvc serve` ({'; '.join(starts)}), 8 threads per worker, "
        "auth on (RECSVC_AUTH_TOKENS), request log to a file",
        f"- load: {args.clients} generator process(es), grpc.aio, closed loop, up to "
        f"{args.channels} TCP connections, requests pre-serialized, responses not parsed; "
        f"{args.warmup:g} s warm-up + {args.seconds:g} s per point; health Check then "
        "RecommendProducts on the same connections",
        f"- requests: random known customers, limit 20, {args.category_share:.0%} with a "
        "one-category filter (category drawn by popularity)",
        f"- all on one {cores}-core host: server workers and load generator share the cores; "
        "'host CPU busy' is the share of all cores busy in the window (anyone's work)",
        "",
        table(points),
        "",
        "Columns: calls/s counts calls completed in the window; percentiles are client-side "
        "(call issued to reply received); server handler ms is the mean time inside the RPC "
        "handler from the server's recsvc_rpc_duration_seconds (excludes transport, "
        "(de)serialization and waiting for a thread); server and client CPU ms/call are the "
        "user+system CPU of all server processes / all load generator processes over the window "
        "divided by the calls; connections per worker are the established TCP connections each "
        "server worker held (the kernel's SO_REUSEPORT hash places them).",
    ]
    if breakdowns:
        lines += [
            "",
            "In-process breakdown of RecommendProducts (same requests, no gRPC, one thread, "
            "mean per call unless noted):",
            "",
            breakdown_table(breakdowns),
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Part 1 of the events benchmark (bench.events runs it): TrackEvents throughput and latency.

Batches of random events (bench.harness.EventMaker) from --clients load generator processes
(grpc.aio, up to --channels connections each, closed loop, replies parsed for the accepted
count) at each concurrency, --warmup then a --seconds window; afterwards the stream length
(XLEN) must have grown by exactly the events the server acknowledged.

Every event_id must be new (a replayed id is answered "duplicate", not stored again), so
unlike bench.harness.serve_jobs requests cannot be cycled: each load process first builds a
pool of distinct serialized batches (``Prepare``, not timed), then sends each batch once
(``Run``). Should the pool run dry, further batches are built during the run and counted in
the result.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import grpc
import numpy as np
import psutil

from bench.harness import (
    EVENTS_TOKEN,
    TYPE_SHARES,
    EventMaker,
    EventMix,
    LoadGenerators,
    Redis,
    Server,
    cpu_seconds,
    fmt,
    host_busy,
    pct,
    sleep_until,
)
from feature_store.keys import Keys
from recsvc.v1 import recommender_pb2 as pb

TRACK = "/recsvc.v1.Events/TrackEvents"
TRACK_METHOD = TRACK.lstrip("/")  # as the server's metrics name it


# -- the load generator process ----------------------------------------------------------------


@dataclass(frozen=True)
class Prepare:
    batches: int
    seed: int


@dataclass(frozen=True)
class Run:
    """Send batches from ``start`` (monotonic) until ``start + warmup + seconds``."""

    target: str
    token: str
    concurrency: int
    channels: int
    start: float
    warmup: float
    seconds: float
    timeout: float = 10.0

    @property
    def window(self) -> tuple[float, float]:
        return self.start + self.warmup, self.start + self.warmup + self.seconds


@dataclass
class RunResult:
    latencies_ns: np.ndarray  # calls that completed inside the window
    window_events: int  # events acknowledged (accepted) by those calls
    acknowledged: int  # events accepted by every answered call (warm-up and tail too)
    calls: int  # every answered call
    duplicates: int
    rejected: int
    errors: dict[str, int] = field(default_factory=dict)
    built_during_run: int = 0  # batches built after the pool ran dry


async def _run(run: Run, pool: deque[bytes], maker: EventMaker) -> RunResult:
    # A local subchannel pool gives every channel its own TCP connection, so the kernel can
    # spread them over the server's SO_REUSEPORT workers.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(run.target, options=options) for _ in range(run.channels)]
    metadata = (("authorization", f"Bearer {run.token}"),)
    latencies: list[int] = []
    errors: dict[str, int] = {}
    totals = {"window": 0, "acked": 0, "calls": 0, "dup": 0, "rejected": 0, "built": 0}
    begin, end = run.window
    try:
        await asyncio.wait_for(
            asyncio.gather(*(c.channel_ready() for c in channels)), timeout=run.timeout
        )
        calls = [
            c.unary_unary(
                TRACK,
                request_serializer=None,  # pre-serialized
                response_deserializer=pb.TrackEventsResponse.FromString,
            )
            for c in channels
        ]
        await asyncio.sleep(max(0.0, run.start - time.monotonic()))

        async def caller(i: int) -> None:
            call = calls[i % len(calls)]
            while time.monotonic() < end:
                if pool:
                    request = pool.popleft()
                else:
                    request = maker.request()
                    totals["built"] += 1
                t0 = time.perf_counter_ns()
                try:
                    reply = await call(request, metadata=metadata, timeout=run.timeout)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                    await asyncio.sleep(0.001)
                    continue
                t1 = time.perf_counter_ns()
                totals["calls"] += 1
                totals["acked"] += reply.accepted
                totals["dup"] += reply.duplicates
                totals["rejected"] += reply.rejected
                if begin <= time.monotonic() < end:
                    latencies.append(t1 - t0)
                    totals["window"] += reply.accepted

        await asyncio.gather(*(caller(i) for i in range(run.concurrency)))
    finally:
        await asyncio.gather(*(c.close(None) for c in channels))
    return RunResult(
        np.asarray(latencies, dtype=np.int64),
        totals["window"],
        totals["acked"],
        totals["calls"],
        totals["dup"],
        totals["rejected"],
        errors,
        totals["built"],
    )


def serve_events(conn: Connection, mix: EventMix) -> None:
    """Process entry point. Prepare: build that many batches, answer how many are ready;
    Run: send them, answer a RunResult (or the exception); None ends the process."""
    pool: deque[bytes] = deque()
    maker = EventMaker(mix, 0)
    while True:
        job = conn.recv()
        if job is None:
            return
        try:
            if isinstance(job, Prepare):
                maker = EventMaker(mix, job.seed)
                pool = deque(maker.request() for _ in range(job.batches))
                conn.send(len(pool))
            else:
                conn.send(asyncio.run(_run(job, pool, maker)))
        except Exception as exc:  # reported by the parent, which owns the run
            conn.send(exc)


# -- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackPoint:
    concurrency: int
    processes: int
    channels: int  # TCP connections in all
    connections: str  # established connections per server worker, e.g. "2+2"
    seconds: float
    calls: int  # completed inside the window
    events: int  # acknowledged by those calls
    p50_ms: float
    p99_ms: float
    handler_ms: float  # server-side mean inside the handler (recsvc_rpc_duration_seconds)
    server_cpu_ms: float  # per call: both workers and the parent
    redis_cpu_ms: float  # per call: redis-server and its forks
    redis_script_ms: float  # per call: of which running the Lua scripts (INFO commandstats)
    client_cpu_ms: float  # per call: the load generator processes
    host_busy: float
    other_cores: float  # CPU of every other process on the host (other users), in cores
    redis_forks: int  # BGSAVE / AOF rewrite forks during the window
    errors: dict[str, int]
    duplicates: int
    rejected: int
    built_during_run: int

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds


@dataclass
class Edge:
    server_cpu: float
    client_cpu: float
    redis_cpu: float
    own_cpu: float  # this process
    scripts: float
    busy: float
    total: float
    forks: int
    handler: tuple[float, float]


def edge(
    server: Server, server_procs: list[psutil.Process], load: LoadGenerators, redis: Redis
) -> Edge:
    busy, total = host_busy()
    return Edge(
        cpu_seconds(server_procs),
        cpu_seconds(load.ps),
        redis.cpu(),
        cpu_seconds([psutil.Process()]),
        redis.script_seconds(),
        busy,
        total,
        redis.forks(),
        server.metrics().get(TRACK_METHOD, (0.0, 0.0)),
    )


def track_level(
    server: Server,
    load: LoadGenerators,
    redis: Redis,
    concurrency: int,
    level: int,
    salt: int,
    args: argparse.Namespace,
) -> tuple[TrackPoint, int]:
    """One concurrency level; returns the point and every event acknowledged in it."""
    clients = min(len(load.pipes), concurrency)
    split = [concurrency // clients + (i < concurrency % clients) for i in range(clients)]
    channels = [min(c, args.channels) for c in split]
    pipes = load.pipes[:clients]
    redis.quiesce()  # no snapshot of the previous level's writes running into this one
    # Enough distinct batches for --max-rate events/s over the whole run of this level.
    per_process = math.ceil(args.max_rate * (args.warmup + args.seconds + 1) / args.batch / clients)
    load.ask(pipes, [Prepare(per_process, salt + level * 100 + i) for i in range(clients)])
    start = time.monotonic() + 1.0  # time to connect
    runs = [
        Run(server.target, EVENTS_TOKEN, split[i], channels[i], start, args.warmup, args.seconds)
        for i in range(clients)
    ]
    for pipe, run in zip(pipes, runs, strict=True):
        pipe.send(run)
    begin, end = runs[0].window
    procs = server.processes()
    sleep_until(begin)
    a = edge(server, procs, load, redis)
    sleep_until(begin + args.seconds / 2)
    conns = server.connections()
    sleep_until(end)
    b = edge(server, procs, load, redis)
    results: list[RunResult] = [pipe.recv() for pipe in pipes]
    for r in results:
        if isinstance(r, Exception):
            raise SystemExit(f"load generator failed: {r!r}\n{server.tail()}")
    lat = np.concatenate([r.latencies_ns for r in results]) / 1e6
    calls = len(lat)
    errors: dict[str, int] = {}
    for r in results:
        for code, n in r.errors.items():
            errors[code] = errors.get(code, 0) + n
    (s0, n0), (s1, n1) = a.handler, b.handler
    per_call = 1e3 / max(calls, 1)
    point = TrackPoint(
        concurrency=concurrency,
        processes=clients,
        channels=sum(channels),
        connections=conns,
        seconds=args.seconds,
        calls=calls,
        events=sum(r.window_events for r in results),
        p50_ms=pct(lat, 50),
        p99_ms=pct(lat, 99),
        handler_ms=(s1 - s0) / (n1 - n0) * 1e3 if n1 > n0 else math.nan,
        server_cpu_ms=(b.server_cpu - a.server_cpu) * per_call,
        redis_cpu_ms=(b.redis_cpu - a.redis_cpu) * per_call,
        redis_script_ms=(b.scripts - a.scripts) * per_call,
        client_cpu_ms=(b.client_cpu - a.client_cpu) * per_call,
        host_busy=(b.busy - a.busy) / max(b.total - a.total, 1e-9),
        other_cores=max(
            0.0,
            (
                (b.busy - a.busy)
                - (b.server_cpu - a.server_cpu)
                - (b.redis_cpu - a.redis_cpu)
                - (b.client_cpu - a.client_cpu)
                - (b.own_cpu - a.own_cpu)
            )
            / args.seconds,
        ),
        redis_forks=b.forks - a.forks,
        errors=errors,
        duplicates=sum(r.duplicates for r in results),
        rejected=sum(r.rejected for r in results),
        built_during_run=sum(r.built_during_run for r in results),
    )
    return point, sum(r.acknowledged for r in results)


@dataclass(frozen=True)
class StreamCheck:
    acknowledged: int
    stream_added: int

    @property
    def ok(self) -> bool:
        return self.acknowledged == self.stream_added


# -- report ------------------------------------------------------------------------------------


def track_table(points: list[TrackPoint]) -> str:
    lines = [
        "| in flight | processes x connections (per worker) | calls/s | events/s acknowledged "
        "| p50 ms | p99 ms | server handler ms | server CPU ms/call | Redis CPU ms/call "
        "| of which Lua scripts "
        "| client CPU ms/call | host CPU busy | of which other processes, cores | Redis forks |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        problems = []
        if p.errors:
            problems.append(f"errors {p.errors}")
        if p.duplicates or p.rejected:
            problems.append(f"{p.duplicates} duplicates, {p.rejected} rejected")
        if p.built_during_run:
            problems.append(f"{p.built_during_run} batches built during the run")
        note = f" ({'; '.join(problems)})" if problems else ""
        lines.append(
            f"| {p.concurrency}{note} | {p.processes} x {p.channels // p.processes} "
            f"({p.connections}) | {p.calls_per_s:,.0f} | **{p.events_per_s:,.0f}** "
            f"| {fmt(p.p50_ms)} | {fmt(p.p99_ms)} | {fmt(p.handler_ms)} "
            f"| {fmt(p.server_cpu_ms)} | {fmt(p.redis_cpu_ms)} | {fmt(p.redis_script_ms)} "
            f"| {fmt(p.client_cpu_ms)} "
            f"| {p.host_busy:.0%} | {p.other_cores:.2f} | {p.redis_forks} |"
        )
    return "\n".join(lines)


def section(
    points: list[TrackPoint], check: StreamCheck | None, args: argparse.Namespace
) -> list[str]:
    """This part's lines of the report."""
    mix = ", ".join(f"{share:.0%} {t}" for t, share in TYPE_SHARES)
    lines = [
        "",
        f"### TrackEvents, batches of {args.batch} events",
        "",
        f"Events: {mix}; customers uniform over the bundle's customers, products by "
        "popularity, uuid4 event_ids, client timestamps. Load: grpc.aio processes, closed "
        f"loop, batches pre-built; {args.warmup:g} s warm-up + {args.seconds:g} s window "
        "per level. CPU per call is user+system time over the window divided by the calls "
        "('of which Lua scripts': Redis's time inside the append, activity and trend "
        "scripts, from INFO commandstats); "
        "'other processes' is the host's busy CPU not used by the server, Redis, the load "
        "generators or the bench (someone else's work on this shared host); 'Redis forks' "
        "are BGSAVE/AOF-rewrite forks during the window.",
        "",
        track_table(points),
    ]
    if check is not None:
        verdict = "equal" if check.ok else "**MISMATCH**"
        lines += [
            "",
            f"Stream check: {check.acknowledged:,} events acknowledged to the clients, "
            f"{check.stream_added:,} entries added to the stream (XLEN): {verdict}.",
        ]
    return lines


def run(
    serve: Callable[[bool], Server],
    ready: Callable[[Server, str], None],
    redis: Redis,
    mix: EventMix,
    salt: int,
    args: argparse.Namespace,
) -> tuple[list[TrackPoint], StreamCheck]:
    """Every --concurrency level on one fresh server (fold-in on), then the stream check."""
    server = serve(True)
    ready(server, f"TrackEvents, {args.workers} workers")
    stream = Keys(redis.namespace).stream
    before = int(redis.client.xlen(stream))
    load = LoadGenerators(args.clients, serve_events, (mix,), "bench-events-load")
    points: list[TrackPoint] = []
    acknowledged = 0
    try:
        for level, c in enumerate(args.concurrency):
            point, acked = track_level(server, load, redis, c, level, salt, args)
            points.append(point)
            acknowledged += acked
            print(
                f"  c={c:<2} {point.events_per_s:8,.0f} events/s "
                f"({point.calls_per_s:,.0f} calls/s)  p50 {point.p50_ms:6.2f}  "
                f"p99 {point.p99_ms:6.2f} ms  conns {point.connections}  "
                f"errors {point.errors or 0}  CPU ms/call server "
                f"{point.server_cpu_ms:.2f} redis {point.redis_cpu_ms:.2f} "
                f"client {point.client_cpu_ms:.2f}  forks {point.redis_forks}  "
                f"busy {point.host_busy:.0%}, others {point.other_cores:.2f} cores",
                flush=True,
            )
    finally:
        load.close()
        server.stop()
    check = StreamCheck(acknowledged, int(redis.client.xlen(stream)) - before)
    print(
        f"  stream check: acknowledged {check.acknowledged:,}, XLEN grew by "
        f"{check.stream_added:,}: {'ok' if check.ok else 'MISMATCH'}",
        flush=True,
    )
    return points, check

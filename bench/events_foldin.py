"""Part 2 of the events benchmark (bench.events runs it): what real-time fold-in adds to
RecommendProducts.

--fold-customers known customers (kept out of part 1) each get 10-20 events through
TrackEvents. Then, in this process, one Engine answers them with activity=None, with their
activity and fold-in off, with fold-in on, and with the activity read from Redis by
Realtime.activity (the servicer's path), interleaved call by call; then through gRPC at
concurrency 1, a second server with RECSVC_FOLD_IN=0 beside the first, alternating.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import psutil

from bench.harness import (
    EVENTS_TOKEN,
    RECOMMEND,
    TOKEN,
    Catalog,
    EventMaker,
    EventMix,
    Job,
    LoadGenerators,
    Others,
    Phase,
    PhaseResult,
    Redis,
    Server,
    check_reply,
    pct,
    sleep_until,
)
from feature_store.store import FeatureStore


@dataclass(frozen=True)
class LatencyRow:
    name: str
    calls: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    handler_ms: float = math.nan  # gRPC: server-side mean (recsvc_rpc_duration_seconds)


def latency_row(
    name: str, ms: list[float] | np.ndarray, handler_ms: float = math.nan
) -> LatencyRow:
    a = np.asarray(ms, dtype=np.float64)
    mean = float(a.mean()) if len(a) else math.nan
    return LatencyRow(name, len(a), pct(a, 50), pct(a, 99), mean, handler_ms)


@dataclass
class FoldInResult:
    customers: int
    events_written: int
    mean_recent: float  # recent events per customer as read back from Redis
    changed_by_fold_in: float  # share of customers whose top 20 fold-in changed
    inproc: list[LatencyRow] = field(default_factory=list)
    grpc: list[LatencyRow] = field(default_factory=list)
    grpc_rounds: int = 0
    others_inproc: float = math.nan  # cores used by other processes meanwhile
    others_grpc: float = math.nan


INPROC_MODEL = "model only (activity=None)"
INPROC_PLAIN = "activity given, fold-in off (RECSVC_FOLD_IN=0)"
INPROC_FOLD = "activity given, fold-in on"
INPROC_READ = "Realtime.activity alone (Redis read)"
INPROC_SERVED = "Realtime.activity + fold-in (servicer path)"
GRPC_ON = "gRPC, server RECSVC_FOLD_IN=1"
GRPC_OFF = "gRPC, server RECSVC_FOLD_IN=0"


def write_activity(
    server: Server, customers: list[str], mix: EventMix, salt: int
) -> tuple[int, int]:
    """10-20 events per customer through TrackEvents (stamped over the last hour)."""
    from recsvc.client import Client

    maker = EventMaker(mix, salt + 999)  # track_level seeds: salt + level * 100 + process
    now = int(time.time() * 1000)
    events = []
    for c in customers:
        n = maker.rng.randint(10, 20)
        for i, e in enumerate(maker.events(n, customer=c, ts_ms=now - 3_600_000)):
            events.append(replace(e, ts_ms=e.ts_ms + i * 180_000))  # 3 minutes apart
    accepted = 0
    with Client(server.target, token=EVENTS_TOKEN, timeout=30) as client:
        for i in range(0, len(events), 100):
            accepted += sum(r.status == "accepted" for r in client.track(events[i : i + 100]))
    return len(events), accepted


def fold_in_inproc(
    catalog: Catalog, redis: Redis, customers: list[str], rounds: int, result: FoldInResult
) -> None:
    """The same engine, side by side: each customer through every variant, in rotating order."""
    import faiss

    from recsvc.engine import Engine, EngineConfig
    from recsvc.realtime import Realtime

    faiss.omp_set_num_threads(1)  # what the server intends for its request threads
    engine = Engine.load(catalog.bundle, EngineConfig(fold_in=True))
    plain = copy.copy(engine)  # shares every array; what EngineConfig(fold_in=False) builds
    plain.fold_in = None
    store = FeatureStore(redis.url, namespace=redis.namespace)
    realtime = Realtime(store)
    try:
        acts = {c: store.activity(c) for c in customers}
        result.mean_recent = float(np.mean([len(a.recent) for a in acts.values()]))
        changed = 0
        for c in customers:
            off = [i.product_id for i in plain.recommend(c, 20, activity=acts[c]).items]
            on = [i.product_id for i in engine.recommend(c, 20, activity=acts[c]).items]
            changed += off != on
        result.changed_by_fold_in = changed / len(customers)

        def served(c: str) -> object:
            return engine.recommend(c, 20, activity=realtime.activity(engine, c))

        variants: list[tuple[str, Callable[[str], object]]] = [
            (INPROC_MODEL, lambda c: engine.recommend(c, 20)),
            (INPROC_PLAIN, lambda c: plain.recommend(c, 20, activity=acts[c])),
            (INPROC_FOLD, lambda c: engine.recommend(c, 20, activity=acts[c])),
            (INPROC_READ, lambda c: realtime.activity(engine, c)),
            (INPROC_SERVED, served),
        ]
        times: dict[str, list[float]] = {name: [] for name, _ in variants}
        for _, fn in variants:  # warm-up
            for c in customers:
                fn(c)
        with Others([psutil.Process(), redis.process]) as others:
            for r in range(rounds):
                for j, c in enumerate(customers):
                    k = (j + r) % len(variants)
                    for name, fn in variants[k:] + variants[:k]:
                        t0 = time.perf_counter_ns()
                        fn(c)
                        times[name].append((time.perf_counter_ns() - t0) / 1e6)
        result.others_inproc = others.cores
        if not realtime.available:
            raise SystemExit("the feature store went unavailable during the fold-in measurement")
        result.inproc = [latency_row(name, times[name]) for name, _ in variants]
    finally:
        store.close()


def fold_in_grpc(
    servers: dict[str, Server],
    redis: Redis,
    customers: list[str],
    rounds: int,
    warmup: float,
    seconds: float,
    result: FoldInResult,
) -> None:
    """RecommendProducts at concurrency 1 against each server in turn (A B A B ...)."""
    from recsvc.v1 import recommender_pb2 as pb

    requests = [
        pb.RecommendProductsRequest(customer_id=c, limit=20).SerializeToString() for c in customers
    ]
    load = LoadGenerators(1)
    lat: dict[str, list[np.ndarray]] = {name: [] for name in servers}
    handler = {name: [0.0, 0.0] for name in servers}  # seconds, calls
    method = RECOMMEND.lstrip("/")
    ours = [psutil.Process(), redis.process, *load.ps]
    ours += [p for server in servers.values() for p in server.processes()]
    others = Others(ours)
    try:
        with others:
            for _ in range(rounds):
                for name, server in servers.items():
                    start = time.monotonic() + 1.0
                    phase = Phase(name, RECOMMEND, requests, start, warmup, seconds)
                    load.pipes[0].send(Job(server.target, TOKEN, 1, 1, [phase]))
                    sleep_until(start + warmup)
                    s0, n0 = server.metrics().get(method, (0.0, 0.0))
                    sleep_until(start + warmup + seconds)
                    s1, n1 = server.metrics().get(method, (0.0, 0.0))
                    handler[name][0] += s1 - s0
                    handler[name][1] += n1 - n0
                    reply = load.pipes[0].recv()
                    if isinstance(reply, Exception):
                        raise SystemExit(f"load generator failed: {reply!r}\n{server.tail()}")
                    res: PhaseResult = reply[0]
                    if res.errors:
                        raise SystemExit(f"RecommendProducts errors on {name}: {res.errors}")
                    check_reply(res.first_response)
                    lat[name].append(res.latencies_ns / 1e6)
    finally:
        load.close()
    result.grpc = [
        latency_row(name, np.concatenate(lat[name]), handler[name][0] / handler[name][1] * 1e3)
        for name in servers
    ]
    result.grpc_rounds = rounds
    result.others_grpc = others.cores


# -- report ------------------------------------------------------------------------------------


def latency_table(rows: list[LatencyRow], baselines: dict[str, str]) -> str:
    by_name = {r.name: r for r in rows}
    handler = any(r.handler_ms == r.handler_ms for r in rows)  # not all NaN
    head = "| variant | calls | p50 ms | p99 ms | mean ms | p50 difference |"
    lines = [
        head + (" server handler mean ms |" if handler else ""),
        "|---|---|---|---|---|---|" + ("---|" if handler else ""),
    ]
    for r in rows:
        diff = ""
        if (base := baselines.get(r.name)) is not None and base in by_name:
            d = r.p50_ms - by_name[base].p50_ms
            diff = f"{d:+.3f} ms vs '{base}'"
        lines.append(
            f"| {r.name} | {r.calls:,} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.mean_ms:.3f} "
            f"| {diff} |" + (f" {r.handler_ms:.3f} |" if handler else "")
        )
    return "\n".join(lines)


def section(fold: FoldInResult, args: argparse.Namespace) -> list[str]:
    """This part's lines of the report."""
    lines = [
        "",
        "### RecommendProducts with and without real-time fold-in",
        "",
        f"{fold.customers} known customers, each with 10-20 events sent through TrackEvents "
        f"after training ({fold.events_written:,} events; {fold.mean_recent:.1f} recent "
        f"events per customer read back); fold-in changed the top 20 of "
        f"{fold.changed_by_fold_in:.0%} of them. limit 20, no filter.",
        "",
        f"In this process, one Engine, one thread, {args.fold_rounds} rounds over the "
        "customers after a warm-up pass, the variants interleaved call by call (other "
        f"processes meanwhile: {fold.others_inproc:.2f} cores):",
        "",
        latency_table(
            fold.inproc,
            {
                INPROC_PLAIN: INPROC_MODEL,
                INPROC_FOLD: INPROC_PLAIN,
                INPROC_SERVED: INPROC_MODEL,
            },
        ),
    ]
    if fold.grpc:
        lines += [
            "",
            f"Through gRPC, concurrency 1, one connection, {fold.grpc_rounds} alternating "
            f"rounds of {args.fold_warmup:g} s warm-up + {args.fold_seconds:g} s per "
            "server (both read the activity from Redis; other processes meanwhile: "
            f"{fold.others_grpc:.2f} cores):",
            "",
            latency_table(fold.grpc, {GRPC_ON: GRPC_OFF}),
            "",
            "The servers run with OMP_NUM_THREADS=1: recsvc.server calls "
            "faiss.omp_set_num_threads(1) in its main thread only, which leaves the RPC "
            "threads searching the exact index with one OpenMP thread per core.",
        ]
    return lines


def run(
    serve: Callable[[bool], Server],
    ready: Callable[[Server, str], None],
    redis: Redis,
    catalog: Catalog,
    customers: list[str],
    mix: EventMix,
    salt: int,
    args: argparse.Namespace,
) -> FoldInResult:
    """Write the customers' activity, then measure in process and (unless
    --fold-grpc-rounds 0) through gRPC; the servers are stopped afterwards."""
    # Two fresh servers, started together: fold-in on and off.
    on = serve(True)
    off = serve(False) if args.fold_grpc_rounds else None
    ready(on, f"RECSVC_FOLD_IN=1, {args.workers} workers")
    if off is not None:
        ready(off, f"RECSVC_FOLD_IN=0, {args.workers} workers")
    written, accepted = write_activity(on, customers, mix, salt)
    if accepted != written:
        raise SystemExit(f"only {accepted} of {written} fold-in events accepted")
    fold = FoldInResult(len(customers), written, 0.0, 0.0)
    fold_in_inproc(catalog, redis, customers, args.fold_rounds, fold)
    for row in fold.inproc:
        print(f"  {row}", flush=True)
    if off is not None:
        fold_in_grpc(
            {GRPC_ON: on, GRPC_OFF: off},
            redis,
            customers,
            args.fold_grpc_rounds,
            args.fold_warmup,
            args.fold_seconds,
            fold,
        )
        for row in fold.grpc:
            print(f"  {row}", flush=True)
    for server in (on, off):
        if server is not None:
            server.stop()
    return fold

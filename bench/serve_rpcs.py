"""Serving cost per RPC against the empty RPC (grpc.health.v1 Health/Check) on the same
`recsvc serve`, in the same run, with the feature store on (issue 13).

    python -m bench.serve_rpcs [--catalogs ml100k,1M] [--calls 3000] [--concurrency 1,8,32]

Every serving RPC: RecommendProducts (known customers, limit 20), SimilarProducts (limit 20),
RankProducts (a known customer, 100 product ids), RecommendOffers (a known customer, the
example offer catalog), GetCustomerProfile (a known customer), each beside health Check.

- Setup: the bundle's world is bulk-loaded into a fresh embedded Redis (`recsvc features
  load`, as `make run` does), then `recsvc serve` (--workers, 0 = CPU count) serves with that
  Redis, RECSVC_OFFERS=examples/offers.yaml, a bearer token (auth on) and its request log
  to a file.
- Sequential: one client channel in this process (sync gRPC, requests pre-serialized,
  answers unparsed), interleaved rounds: one call of every RPC per round, the order rotated
  each round; --warmup-calls rounds are dropped, then --calls rounds are timed.
  ratio = median(health) / median(RPC); the goal is at least 0.5.
- Concurrency: a load generator process (grpc.aio, closed loop, up to --channels TCP
  connections) runs, for each RPC, --rounds turns of a health window and then the RPC's
  window on the same connections, back to back (--seconds per RPC in all), pooled per RPC.
  ratio = RPC calls/s / health calls/s; the goal is at least 0.5 at concurrency 8 and 32.
- Profile (--profile-seconds, 0 = none): each RPC of --profile-rpcs (default all) at
  concurrency 8 once more while `py-spy record --nonblocking --format raw` samples one
  server worker in three views (active threads, the GIL holder, request threads' wall
  time); the samples are split by the part of the serving path they are in
  (bench/harness/profile.py).

Bundles: ml100k = MovieLens-100k (`recsvc data movielens100k`, trained once into
var/bench/serve_rpcs/models-ml100k); 1M = bench.serve's 1M-product bundle (trained once into
var/bench/serve/models-1m: more than 25 minutes on a busy 2-core host; its features load
takes minutes too).
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import polars as pl
from google.protobuf.message import Message

from bench.harness import (
    HEALTH,
    RECOMMEND,
    TOKEN,
    Catalog,
    Job,
    LoadGenerators,
    Phase,
    Server,
    add_load_options,
    million_catalog,
    million_world,
    pool,
    published,
    recsvc_bin,
    run_timed,
    run_windows,
    sleep_until,
    split_load,
    train_bundle,
    world_files,
    write_results,
)
from bench.harness.profile import VIEWS, Split, py_spy_command, record
from bench.serve_rpcs_report import (
    HEALTH_NAME,
    OFFERS,
    CatalogRun,
    LevelRow,
    Profile,
    level_row,
    most_common,
    outage_spans,
    outages,
    overlap_s,
    profiled,
    render,
    sequential_rows,
)
from formats.bundle import CUSTOMERS, PRODUCTS
from recsvc.v1 import recommender_pb2 as pb

WORKDIR = Path("var/bench/serve_rpcs")
RECOMMEND_NAME = "RecommendProducts"


@dataclass(frozen=True)
class Rpc:
    name: str
    method: str
    requests: list[bytes]  # serialized, cycled
    reply: type[Message] | None  # to read a sample of answers (None: health)


def ml100k_catalog(workdir: Path = WORKDIR) -> Catalog:
    """MovieLens-100k, written and trained once under ``workdir``."""
    models = workdir / "models-ml100k"
    if (catalog := published("ml100k", models)) is not None:
        return catalog
    world = ml100k_world(workdir)
    if not (world / "interactions.csv").exists():
        run_timed([recsvc_bin(), "data", "movielens100k", "--out", str(world)])
    return train_bundle(
        "ml100k", models, world, ["--no-clv-check"], note="training the MovieLens-100k bundle"
    )


def ml100k_world(workdir: Path = WORKDIR) -> Path:
    return workdir / "ml100k"


CATALOGS: dict[str, tuple[Callable[[], Catalog], Callable[[], Path]]] = {
    "ml100k": (ml100k_catalog, ml100k_world),
    "1M": (million_catalog, million_world),
}


def load_features(catalog: Catalog, world: Path, redis_dir: Path) -> float:
    """A fresh embedded Redis in ``redis_dir`` with the world's features, as `make run` loads
    them; seconds taken."""
    shutil.rmtree(redis_dir, ignore_errors=True)
    t = run_timed(
        [
            recsvc_bin(),
            *("features", "load", *world_files(world, customers=True)),
            *("--model-dir", str(catalog.model_dir), "--quiet"),
        ],
        env={"RECSVC_REDIS_DIR": str(redis_dir)},
    )
    return t.seconds


def rpc_mix(catalog: Catalog, n: int = 4000, rank_ids: int = 100, seed: int = 0) -> list[Rpc]:
    """Health first, then every serving RPC with ``n`` random requests of known customers
    and catalog products."""
    from grpc_health.v1 import health_pb2

    rng = random.Random(seed)
    customers = pl.read_parquet(catalog.bundle / CUSTOMERS, columns=["customer_id"])
    ids = [str(c) for c in customers["customer_id"].to_list()]
    products = pl.read_parquet(catalog.bundle / PRODUCTS, columns=["product_id"])
    pids = [str(p) for p in products["product_id"].to_list()]
    who = [rng.choice(ids) for _ in range(n)]

    def each(make: Callable[[int], Message]) -> list[bytes]:
        return [make(i).SerializeToString() for i in range(n)]

    health = [health_pb2.HealthCheckRequest(service="").SerializeToString()]
    return [
        Rpc(HEALTH_NAME, HEALTH, health, None),
        Rpc(
            RECOMMEND_NAME,
            RECOMMEND,
            each(lambda i: pb.RecommendProductsRequest(customer_id=who[i], limit=20)),
            pb.RecommendProductsResponse,
        ),
        Rpc(
            "SimilarProducts",
            "/recsvc.v1.Recommender/SimilarProducts",
            each(lambda i: pb.SimilarProductsRequest(product_id=rng.choice(pids), limit=20)),
            pb.SimilarProductsResponse,
        ),
        Rpc(
            f"RankProducts ({rank_ids} ids)",
            "/recsvc.v1.Recommender/RankProducts",
            each(
                lambda i: pb.RankProductsRequest(
                    customer_id=who[i], product_ids=rng.sample(pids, min(rank_ids, len(pids)))
                )
            ),
            pb.RankProductsResponse,
        ),
        Rpc(
            "RecommendOffers",
            "/recsvc.v1.Recommender/RecommendOffers",
            each(lambda i: pb.RecommendOffersRequest(customer_id=who[i], limit=3)),
            pb.RecommendOffersResponse,
        ),
        Rpc(
            "GetCustomerProfile",
            "/recsvc.v1.Recommender/GetCustomerProfile",
            each(lambda i: pb.GetCustomerProfileRequest(customer_id=who[i])),
            pb.CustomerProfile,
        ),
    ]


def answers(reply: Message) -> str:
    """What one answer carries, for the report: items, offers, or whether the customer is
    known."""
    for name in ("items", "offers"):
        if name in reply.DESCRIPTOR.fields_by_name:
            return f"{len(getattr(reply, name))} {name}"
    if isinstance(reply, pb.CustomerProfile):
        return "known" if reply.known else "unknown"
    return ""


# -- sequential --------------------------------------------------------------------------------


def sequential(
    target: str, rpcs: list[Rpc], calls: int, warmup: int
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, dict[str, int]]]:
    """Latencies (ms) of ``calls`` interleaved rounds per RPC on one channel (failed calls
    are counted by status, not timed), and what a sample of each RPC's answers carried (read
    before the timed rounds)."""
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    with grpc.insecure_channel(target) as channel:
        # No serializers: bytes in, bytes out, as the load generator sends them.
        stubs = {r.name: channel.unary_unary(r.method, None, None) for r in rpcs}
        carried: dict[str, str] = {}
        for r in rpcs:
            if r.reply is not None:
                seen = [
                    answers(r.reply.FromString(stubs[r.name](q, metadata=metadata, timeout=30)))
                    for q in r.requests[:50]
                ]
                carried[r.name] = most_common(seen)
        latencies: dict[str, list[int]] = {r.name: [] for r in rpcs}
        errors: dict[str, dict[str, int]] = {r.name: {} for r in rpcs}
        for i in range(warmup + calls):
            k = i % len(rpcs)
            for r in rpcs[k:] + rpcs[:k]:  # the order rotates every round
                request = r.requests[i % len(r.requests)]
                t0 = time.perf_counter_ns()
                try:
                    stubs[r.name](request, metadata=metadata, timeout=10)
                except grpc.RpcError as exc:
                    code = exc.code().name if isinstance(exc, grpc.Call) else "ERROR"
                    errors[r.name][code] = errors[r.name].get(code, 0) + 1
                    continue
                t1 = time.perf_counter_ns()
                if i >= warmup:
                    latencies[r.name].append(t1 - t0)
    lat = {k: np.asarray(v, dtype=np.int64) / 1e6 for k, v in latencies.items()}
    return lat, carried, errors


# -- concurrency --------------------------------------------------------------------------------


def phases_for(
    rpcs: list[Rpc], start: float, warmup: float, seconds: float, rounds: int = 1
) -> list[Phase]:
    """For every RPC but health: ``rounds`` turns of a health window then the RPC's window,
    back to back, ``seconds / rounds`` each (pooled by name: a load swing on a shared host
    hits both alike). The first turn warms up for ``warmup``, the others for at most 0.3 s."""
    health = rpcs[0]
    window = seconds / rounds
    phases = []
    for r in rpcs[1:]:
        for turn in range(rounds):
            wait = warmup if turn == 0 else min(warmup, 0.3)
            for name, rpc in ((f"{HEALTH_NAME} before {r.name}", health), (r.name, r)):
                phases.append(Phase(name, rpc.method, rpc.requests, start, wait, window))
                start += wait + window + 0.2
    return phases


def run_level(
    server: Server, load: LoadGenerators, rpcs: list[Rpc], concurrency: int, args: Any
) -> list[LevelRow]:
    phases = phases_for(rpcs, time.monotonic() + 1.5, args.warmup, args.seconds, args.rounds)
    to_wall = time.time() - time.monotonic()
    redis = server.redis_server()
    jobs = jobs_for(server, load, phases, concurrency, args)
    results, windows = run_windows(server, load, jobs, also=[redis] if redis else [])
    spans = outage_spans(server.log.read_text(errors="replace"))
    rows = []
    for r in rpcs[1:]:
        row = level_row(
            r.name,
            concurrency,
            pool(r.name, phases, results, windows),
            pool(f"{HEALTH_NAME} before {r.name}", phases, results, windows),
        )
        overlap = sum(
            overlap_s(spans, p.window[0] + to_wall, p.window[1] + to_wall)
            for p in phases
            if p.name == r.name
        )
        rows.append(replace(row, without_redis_s=overlap))
    return rows


def jobs_for(
    server: Server, load: LoadGenerators, phases: list[Phase], concurrency: int, args: Any
) -> list[Job]:
    return [
        Job(server.target, TOKEN, callers, channels, phases, offset=i * 7919)
        for i, (callers, channels) in enumerate(
            split_load(concurrency, len(load.pipes), args.channels)
        )
    ]


# -- profile -------------------------------------------------------------------------------------


def profile(
    server: Server, load: LoadGenerators, rpc: Rpc, args: Any, out: Path, concurrency: int = 8
) -> Profile:
    """``rpc`` at ``concurrency`` while py-spy samples the first server worker, one py-spy
    process per view (bench.harness.profile), all at once."""
    worker = next(p for p in server.workers_pids() if "redis" not in " ".join(p.cmdline()))
    start = time.monotonic() + 1.5
    seconds = args.profile_seconds + 1.5  # py-spy attaches within the window's start
    phases = [Phase(rpc.name, rpc.method, rpc.requests, start, args.warmup, seconds)]
    tag = "health" if rpc.method == HEALTH else rpc.name.split(" ")[0]
    stacks = {v: out / f"profile-{tag}-c{concurrency}-{v}.txt" for v in VIEWS}
    splits: dict[str, Split] = {}

    def sample_worker(view: str) -> None:
        sleep_until(phases[0].window[0] + 0.5)
        splits[view] = record(worker.pid, args.profile_seconds, stacks[view], view)

    threads = [threading.Thread(target=sample_worker, args=(v,)) for v in VIEWS]
    for t in threads:
        t.start()
    try:
        jobs = jobs_for(server, load, phases, concurrency, args)
        results, windows = run_windows(server, load, jobs)
    finally:
        for t in threads:
            t.join()
    if set(splits) != set(VIEWS):
        raise SystemExit("py-spy recorded nothing")
    commands = [
        shlex.join(py_spy_command(worker.pid, args.profile_seconds, stacks[v], v)) for v in VIEWS
    ]
    rate = pool(rpc.name, phases, results, windows).rate
    views = {v: splits[v] for v in VIEWS}
    return Profile(rpc.name, concurrency, worker.pid, args.profile_seconds, rate, views, commands)


# -- driver --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--catalogs", default="ml100k", help="ml100k and/or 1M (default %(default)s)"
    )
    parser.add_argument(
        "--calls", type=int, default=3000, help="timed sequential calls per RPC (default 3000)"
    )
    parser.add_argument(
        "--warmup-calls", type=int, default=200, help="untimed sequential rounds (default 200)"
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="server workers, 0 = CPU count (default 0)"
    )
    add_load_options(parser, seconds=4.0, warmup=1.0)
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="turns of health and RPC windows per RPC and level, pooled (default 4)",
    )
    parser.add_argument(
        "--profile-seconds",
        type=float,
        default=10.0,
        help="py-spy on one worker during each profiled RPC at concurrency 8 "
        "(default 10; 0 = no profile)",
    )
    parser.add_argument(
        "--profile-rpcs",
        default="all",
        help="RPCs to profile, by the first word of their name, comma-separated "
        "(e.g. RecommendProducts,health; default all)",
    )
    parser.add_argument("--out", type=Path, default=WORKDIR, help="results, logs and profiles")
    return parser.parse_args(argv)


def run_catalog(
    catalog: Catalog, world: Path, load: LoadGenerators, args: argparse.Namespace
) -> CatalogRun:
    redis_dir = args.out / f"redis-{catalog.label}"
    print(f"  loading the features into {redis_dir} ...", flush=True)
    features_s = load_features(catalog, world, redis_dir)
    rpcs = rpc_mix(catalog)
    workers = args.workers or os.cpu_count() or 1
    log = args.out / f"server-{catalog.label}.log"
    env = {"RECSVC_OFFERS": str(OFFERS.resolve())}
    server = Server(catalog, workers, log, env=env, redis_dir=redis_dir)
    stages: dict[str, tuple[int, int]] = {}

    def stage(name: str) -> None:
        before = [sum(x) for x in zip(*stages.values(), strict=True)] or [0, 0]
        now = outages(log.read_text(errors="replace"))
        stages[name] = (now[0] - before[0], now[1] - before[1])
        if stages[name][0]:
            print(f"    feature store outages during {name}: {stages[name]}", flush=True)

    try:
        ready = server.wait_ready()
        print(f"  {workers} worker(s) ready in {ready:.0f} s; sequential ...", flush=True)
        lat, carried, failed = sequential(server.target, rpcs, args.calls, args.warmup_calls)
        seq = sequential_rows(lat, carried, failed)
        stage("sequential")
        for s in seq:
            print(f"    {s.rpc:<28} p50 {s.p50_ms:6.3f} ms  ratio {s.ratio:.2f}", flush=True)
        levels = []
        for c in args.concurrency:
            level = run_level(server, load, rpcs, c, args)
            stage(f"concurrency {c}")
            for r in level:
                print(
                    f"    c={c:<3} {r.rpc:<28} {r.calls_per_s:8,.0f}/s vs health "
                    f"{r.health_calls_per_s:8,.0f}/s  ratio {r.ratio:.2f}  errors {r.errors or 0}",
                    flush=True,
                )
            levels.extend(level)
        profiles = []
        if args.profile_seconds > 0:
            by_name = {r.name: r for r in rpcs}
            for name in profiled(list(by_name), args.profile_rpcs):
                p = profile(server, load, by_name[name], args, args.out)
                print(f"    profile {name}: {p.views}", flush=True)
                profiles.append(p)
            stage("profiles")
    finally:
        server.stop()
    log.unlink(missing_ok=True)  # one line per request: large, and kept on failure
    return CatalogRun(catalog, features_s, ready, seq, levels, profiles, stages)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join(
        ["python", "-m", "bench.serve_rpcs", *(sys.argv[1:] if argv is None else argv)]
    )
    began = time.perf_counter()
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    args.out.mkdir(parents=True, exist_ok=True)
    labels = [c.strip() for c in args.catalogs.split(",") if c.strip()]
    unknown = [c for c in labels if c not in CATALOGS]
    if unknown:
        raise SystemExit(f"unknown catalog(s) {unknown}; choose from {list(CATALOGS)}")
    load_before = os.getloadavg()
    load = LoadGenerators(args.clients)
    runs = []
    try:
        for label in labels:
            build, world = CATALOGS[label]
            catalog = build()
            print(f"{label}: {catalog.bundle} ({catalog.products:,} products)", flush=True)
            runs.append(run_catalog(catalog, world(), load, args))
    finally:
        load.close()
    load_after = os.getloadavg()
    elapsed = time.perf_counter() - began
    report = render(args, runs, command, elapsed, (load_before, load_after))
    write_results(
        args.out,
        report,
        command,
        {
            "load_average": {"before": load_before, "after": load_after},
            "catalogs": [
                {
                    "catalog": r.catalog.label,
                    "products": r.catalog.products,
                    "customers": r.catalog.customers,
                    "sequential": [asdict(s) for s in r.sequential],
                    "outages": r.outages,
                    "levels": [asdict(lv) | {"ratio": lv.ratio} for lv in r.levels],
                    "profiles": [
                        {
                            "rpc": p.rpc,
                            "concurrency": p.concurrency,
                            "calls_per_s": p.calls_per_s,
                            "samples": {v: p.views[v].samples for v in VIEWS},
                            "commands": p.commands,
                        }
                        for p in r.profiles
                    ],
                }
                for r in runs
            ],
        },
    )


if __name__ == "__main__":
    main()

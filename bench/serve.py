"""Serving latency and throughput: RecommendProducts next to an empty RPC (grpc.health.v1
Check) on the same `recsvc serve`, and the same RecommendProducts requests over HTTP/JSON
(the Connect protocol on RECSVC_HTTP_PORT) beside native gRPC, at several concurrency levels,
for a 100k- and a 1M-product catalog.

    python -m bench.serve [--catalogs 100k,1M] [--concurrency 1,8,32] [--workers 0,1] [--no-http]

Setup: the server is `recsvc serve` in a subprocess (its default workers = CPU count, then
--workers 1), RECSVC_AUTH_TOKENS set to a bench token, traffic to 127.0.0.1 only. The load
generator runs in its own process(es): one grpc.aio event loop each, closed-loop callers over
up to --channels TCP connections, requests pre-serialized and responses left unparsed. Both
RPCs of one concurrency level share those connections and run back to back (health first),
each with --warmup seconds then a --seconds window. Server and client CPU time and the host's
busy CPU are sampled at the window edges; the server-side handler time comes from the
server's own Prometheus histogram (recsvc_rpc_duration_seconds). The HTTP/JSON phase follows
on the same server: the same requests as proto3 JSON bodies, one keep-alive HTTP/1.1
connection per caller (HTTP/1.1 carries one call at a time), requests built before the window,
answers unparsed. Before the servers of a catalog start, the same requests are replayed in
this process without gRPC to split a call's server CPU into its parts.

Bundles: 100k products = var/bench/scale/models (make it with `python -m bench.train_scale`);
1M products is trained once into var/bench/serve/models-1m (synthetic world of 300k customers,
1M products, 10 events each; more than 25 minutes on a busy 2-core host) and reused afterwards
(bench.harness.million_catalog, shared with bench.serve_rpcs). Delete that
directory to retrain (e.g. after a change to training or to the bundle format).
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

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
    check_reply,
    fmt,
    ints,
    json_bodies,
    machine,
    million_catalog,
    pct,
    pool,
    published,
    run_windows,
    split_load,
    today,
    write_results,
)
from formats.bundle import CUSTOMERS, PRODUCTS
from recsvc.v1 import recommender_pb2 as pb

SCALE_MODELS = Path("var/bench/scale/models")
WORKDIR = Path("var/bench/serve")
RPC_NAMES = {RECOMMEND: "RecommendProducts", HEALTH: "health Check"}
OVER_HTTP = "RecommendProducts HTTP/JSON"


def scale_catalog(model_dir: Path = SCALE_MODELS) -> Catalog:
    catalog = published("100k", model_dir)
    if catalog is None:
        raise SystemExit(
            f"no published bundle in {model_dir}: make it with `python -m bench.train_scale` "
            "(1M customers x 100k products; about 5 minutes on 2 cores)"
        )
    return catalog


@dataclass(frozen=True)
class RequestMix:
    """Serialized requests, cycled by the load generator."""

    recommend: list[bytes]
    health: list[bytes]
    recommend_json: list[bytes]  # the same requests as proto3 JSON bodies
    category_share: float
    categories: int  # distinct categories used by the filtered requests


def request_mix(
    catalog: Catalog, n: int = 4000, category_share: float = 0.2, limit: int = 20, seed: int = 0
) -> RequestMix:
    """Random known customers, ``limit`` items; ``category_share`` of them filtered to one
    category, drawn with the catalog's popularity (a category page of a busy aisle)."""
    from grpc_health.v1 import health_pb2

    rng = random.Random(seed)
    customers = pl.read_parquet(catalog.bundle / CUSTOMERS, columns=["customer_id"])
    ids = customers["customer_id"].to_list()
    products = pl.read_parquet(catalog.bundle / PRODUCTS, columns=["category", "popularity"])
    weights = (
        products.with_columns(pl.col("category").cast(pl.Utf8).fill_null("uncategorized"))
        .group_by("category")
        .agg(pl.col("popularity").sum() + 1.0)
        .sort("category")
    )
    names = weights["category"].to_list()
    cum = weights["popularity"].to_list()
    requests = []
    used: set[str] = set()
    for _ in range(n):
        request = pb.RecommendProductsRequest(customer_id=rng.choice(ids), limit=limit)
        if rng.random() < category_share:
            category = rng.choices(names, weights=cum)[0]
            used.add(category)
            request.filter.include_categories.append(category)
        requests.append(request.SerializeToString())
    health = [health_pb2.HealthCheckRequest(service="").SerializeToString()]
    return RequestMix(requests, health, json_bodies(requests), category_share, len(used))


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


def run_level(
    server: Server,
    load: LoadGenerators,
    catalog: Catalog,
    mix: RequestMix,
    concurrency: int,
    args: argparse.Namespace,
) -> list[Point]:
    """Health, then RecommendProducts over gRPC and over HTTP/JSON in turns (``--rounds``
    windows each, pooled), at one concurrency: both see the same moments of a shared host."""
    start = time.monotonic() + 1.5  # time to connect
    phases = [Phase(RPC_NAMES[HEALTH], HEALTH, mix.health, start, args.warmup, args.seconds)]
    start += args.warmup + args.seconds + 0.5
    rounds = 1 if args.no_http else args.rounds
    window = args.seconds / rounds
    for r in range(rounds):
        warmup = args.warmup if r == 0 else min(args.warmup, 0.5)
        turn = [Phase(RPC_NAMES[RECOMMEND], RECOMMEND, mix.recommend, start, warmup, window)]
        if not args.no_http:
            over_http = Phase(OVER_HTTP, RECOMMEND, mix.recommend_json, 0.0, warmup, window)
            turn.append(replace(over_http, start=start + warmup + window + 0.2, http=True))
        phases.extend(turn)
        start += len(turn) * (warmup + window + 0.2)
    split = split_load(concurrency, len(load.pipes), args.channels)
    jobs = [
        Job(server.target, TOKEN, callers, channels, phases, offset=i * 7919)
        for i, (callers, channels) in enumerate(split)
    ]
    jobs = [replace(job, http_target=server.http_target) for job in jobs]
    results, windows = run_windows(server, load, jobs)
    points = []
    for name in dict.fromkeys(p.name for p in phases):  # in order, each name once
        pooled = pool(name, phases, results, windows)
        if pooled.phase.method == RECOMMEND:
            check_reply(pooled.first_response, json=pooled.phase.http)
        lat = pooled.latencies_ms
        points.append(
            Point(
                catalog=catalog.label,
                workers=server.workers,
                rpc=name,
                concurrency=concurrency,
                calls=pooled.calls,
                seconds=pooled.seconds,
                p50_ms=pct(lat, 50),
                p90_ms=pct(lat, 90),
                p99_ms=pct(lat, 99),
                handler_ms=pooled.handler_ms,
                server_cpu_ms=pooled.per_call_ms(pooled.server_cpu_s),
                client_cpu_ms=pooled.per_call_ms(pooled.client_cpu_s),
                host_busy=pooled.host_busy,
                connections=pooled.connections,
                errors=pooled.errors,
            )
        )
    return points


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


def http_table(points: list[Point]) -> str:
    """RecommendProducts over HTTP/JSON against native gRPC, measured back to back."""
    native = {
        (p.catalog, p.workers, p.concurrency): p for p in points if p.rpc == RPC_NAMES[RECOMMEND]
    }
    lines = [
        "| catalog | server workers | concurrency | gRPC p50 ms | HTTP/JSON p50 ms | p50 ratio "
        "| gRPC p99 ms | HTTP/JSON p99 ms | p99 ratio | gRPC calls/s | HTTP/JSON calls/s "
        "| server CPU ms/call gRPC | HTTP/JSON |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for h in (p for p in points if p.rpc == OVER_HTTP):
        g = native.get((h.catalog, h.workers, h.concurrency))
        if g is None:
            continue
        lines.append(
            f"| {h.catalog} | {h.workers} | {h.concurrency} | {fmt(g.p50_ms)} | {fmt(h.p50_ms)} "
            f"| {h.p50_ms / g.p50_ms:.2f}x | {fmt(g.p99_ms)} | {fmt(h.p99_ms)} "
            f"| {h.p99_ms / g.p99_ms:.2f}x | {g.rate:,.0f} | {h.rate:,.0f} "
            f"| {fmt(g.server_cpu_ms, 3)} | {fmt(h.server_cpu_ms, 3)} |"
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--catalogs", default="100k,1M", help="100k and/or 1M (default %(default)s)"
    )
    parser.add_argument(
        "--workers",
        type=ints,
        default=[0, 1],
        help="server worker counts to run, 0 = recsvc's default (CPU count); default 0,1",
    )
    add_load_options(parser, seconds=8.0, warmup=2.0)
    parser.add_argument(
        "--category-share",
        type=float,
        default=0.2,
        help="requests filtered to one category (default 0.2)",
    )
    parser.add_argument("--no-inproc", action="store_true", help="skip the in-process breakdown")
    parser.add_argument(
        "--no-http", action="store_true", help="skip RecommendProducts over HTTP/JSON"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="turns of gRPC and HTTP/JSON RecommendProducts windows per point, pooled "
        "(default 4: a shared host's load swings hit both alike)",
    )
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
                                f"  {p.catalog} w{p.workers} {p.rpc:<27} c={p.concurrency:<3} "
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
        "RecommendProducts on the same connections"
        + (
            f"; RecommendProducts over gRPC and over HTTP/JSON in {args.rounds} turns of "
            f"{args.seconds / args.rounds:g} s each, pooled (HTTP: the same requests as "
            "proto3 JSON, one keep-alive HTTP/1.1 connection per caller, answers unparsed)"
            if not args.no_http
            else ""
        ),
        f"- requests: random known customers, limit 20, {args.category_share:.0%} with a "
        "one-category filter (category drawn by popularity)",
        f"- all on one {cores}-core host: server workers and load generator share the cores; "
        "'host CPU busy' is the share of all cores busy in the window (anyone's work)",
        "",
        table(points),
        "",
        *(
            [
                "RecommendProducts over HTTP/JSON beside native gRPC (same server, same "
                "requests, measured back to back):",
                "",
                http_table(points),
                "",
            ]
            if not args.no_http
            else []
        ),
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

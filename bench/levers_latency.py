"""RecommendProducts latency with exploration and promotions on versus off, side by side.

    python -m bench.levers_latency [--calls 3000] [--new-products 200]

Three `recsvc serve` processes (one worker each) serve the same bundle from the same Redis:
``off`` (RECSVC_EXPLORATION_SHARE=0, no promotions), ``exploration`` (share 0.1) and
``exploration+promotions`` (share 0.1 and examples/promotions.yaml: a 10% share of coffee on
the home page and a score boost of two brands' tea and snacks). ``--new-products`` products are
created live before they start (UpdateProducts' feature-store path), so exploration has new
products to offer. The bench process calls the three one call at a time, per random trained
customer (limit 20, surface home), in rotating order so all see the same machine noise;
client-side latency over loopback, warm-up excluded. A second table replays the same requests
in this process without gRPC or Redis (Engine.recommend with the same levers) and reports the
CPU time of the calling thread per call, which a loaded machine disturbs less than wall time.
Outputs var/bench/levers/results.*.
"""

from __future__ import annotations

import argparse
import random
import shlex
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np

from bench.harness import (
    TOKEN,
    Redis,
    Server,
    machine,
    pct,
    published,
    synth_once,
    today,
    train_bundle,
    write_results,
)
from feature_store import catalog as products
from feature_store.store import FeatureStore
from formats import bundle as b
from formats.types import ProductChange
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc

WORK = Path("var/bench/levers")
ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "bench-levers"
CONFIGS = {
    "off": {"RECSVC_EXPLORATION_SHARE": "0"},
    "exploration": {"RECSVC_EXPLORATION_SHARE": "0.1"},
    "exploration+promotions": {
        "RECSVC_EXPLORATION_SHARE": "0.1",
        "RECSVC_PROMOTIONS": str(ROOT / "examples" / "promotions.yaml"),
    },
}


def new_products(bundle: b.Bundle, n: int, seed: int = 0) -> list[ProductChange]:
    """Products described like random catalog products (title, category, brand), created now."""
    rng = random.Random(seed)
    rows = bundle.products.select("title", "category", "brand").to_dicts()
    out = []
    for i in range(n):
        row = rng.choice(rows)
        out.append(
            ProductChange(
                f"NEW{i:05d}",
                stock=10,
                price=9.99,
                title=f"{row['title']} (new)",
                category=str(row["category"]),
                attributes={"brand": str(row["brand"])},
            )
        )
    return out


def engine_cpu(
    bundle: b.Bundle, created: list[ProductChange], customers: list[str], calls: int
) -> dict[str, list[float]]:
    """CPU microseconds per Engine.recommend call, per configuration, interleaved."""
    from recsvc.engine import Engine, EngineConfig
    from recsvc.engine.slots import Levers
    from recsvc.promotions import load_promotions

    now = int(time.time() * 1000)
    stamped = [replace(c, created_ms=now) for c in created]
    rules = load_promotions(ROOT / "examples" / "promotions.yaml").active(datetime.now(UTC), "home")
    engines = {}
    for name, extra in CONFIGS.items():
        share = float(extra["RECSVC_EXPLORATION_SHARE"])
        engine = Engine(bundle, EngineConfig(exploration_share=share))
        engine.apply_changes(1, stamped)
        levers = Levers(rules if "RECSVC_PROMOTIONS" in extra else (), None, now)
        engines[name] = (engine, levers)
    cpu: dict[str, list[float]] = {name: [] for name in engines}
    rng = random.Random(1)
    for n in range(calls + 200):
        customer = rng.choice(customers)
        for name, (engine, levers) in engines.items():
            start = time.thread_time_ns()
            engine.recommend(customer, 20, levers=levers)
            if n >= 200:
                cpu[name].append((time.thread_time_ns() - start) / 1000)
    return cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--products", type=int, default=2_000)
    parser.add_argument("--new-products", type=int, default=200)
    parser.add_argument("--calls", type=int, default=3000, help="calls per server")
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    world = synth_once(
        WORK / "world",
        ["--customers", str(args.customers), "--products", str(args.products), "--seed", "11"],
        note="building the world",
    )
    catalog = published("levers", WORK / "models") or train_bundle(
        "levers",
        WORK / "models",
        world,
        ["--baselines", "popularity", "--no-clv-check", "--cold-start-fraction", "0"],
        note="training",
    )
    bundle = b.load_bundle(catalog.bundle)
    customers = [str(c) for c in bundle.customer_ids.to_list()]
    created = new_products(bundle, args.new_products)
    cpu = engine_cpu(bundle, created, customers, args.calls)
    redis = Redis(WORK / "redis", namespace=NAMESPACE)
    store = FeatureStore(redis.url, namespace=NAMESPACE)
    products.update_products(store, created)
    store.close()
    env = {"REDIS_URL": redis.url, "RECSVC_REDIS_NAMESPACE": NAMESPACE}
    servers = {
        name: Server(catalog, 1, WORK / f"serve-{name.replace('+', '-')}.log", {**env, **extra})
        for name, extra in CONFIGS.items()
    }
    times: dict[str, list[float]] = {name: [] for name in servers}
    slots: dict[str, dict[str, int]] = {name: {} for name in servers}
    try:
        for server in servers.values():
            server.wait_ready()
        metadata = (("authorization", f"Bearer {TOKEN}"),)
        channels = {n: grpc.insecure_channel(s.target) for n, s in servers.items()}
        stubs = {n: pb_grpc.RecommenderStub(c) for n, c in channels.items()}
        rng = random.Random(0)
        names = list(servers)
        for n in range(args.calls + args.warmup):
            request = pb.RecommendProductsRequest(
                customer_id=rng.choice(customers),
                limit=20,
                context=pb.Context(surface=pb.SURFACE_HOME),
            )
            order = names[n % len(names) :] + names[: n % len(names)]  # rotate who goes first
            for name in order:
                start = time.perf_counter()
                reply = stubs[name].RecommendProducts(request, metadata=metadata, timeout=10)
                elapsed = (time.perf_counter() - start) * 1000
                if n >= args.warmup:
                    times[name].append(elapsed)
                    for item in reply.items:
                        slot = pb.SlotKind.Name(item.slot).removeprefix("SLOT_KIND_").lower()
                        slots[name][slot] = slots[name].get(slot, 0) + 1
        for channel in channels.values():
            channel.close()
    finally:
        for server in servers.values():
            server.stop()
        redis.close()
    command = "python -m bench.levers_latency " + shlex.join(sys.argv[1:] if argv is None else argv)
    base = statistics.median(times["off"])
    lines = [
        f"Command: `{command.strip()}`, {today()}, {machine()}.",
        f"{args.customers:,} customers x {args.products:,} products (synthetic, seed 11) plus "
        f"{args.new_products} products created live; {args.calls:,} calls per server after "
        f"{args.warmup} warm-up rounds, one at a time, rotating; limit 20, surface home.",
        "",
        "| server | p50 ms | p90 ms | p99 ms | mean ms | p50 vs off | items by slot |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, values in times.items():
        arr = np.asarray(values)
        total = sum(slots[name].values())
        shares = ", ".join(
            f"{k} {v / total:.1%}" for k, v in sorted(slots[name].items(), key=lambda kv: -kv[1])
        )
        lines.append(
            f"| {name} | {pct(arr, 50):.2f} | {pct(arr, 90):.2f} | {pct(arr, 99):.2f} | "
            f"{arr.mean():.2f} | {statistics.median(values) / base:.2f}x | {shares} |"
        )
    cpu_base = statistics.median(cpu["off"])
    lines += [
        "",
        "| in process (Engine.recommend, no gRPC or Redis) | median CPU µs per call | vs off |",
        "|---|---|---|",
    ]
    for name, values in cpu.items():
        median_us = statistics.median(values)
        lines.append(f"| {name} | {median_us:.0f} | {median_us / cpu_base:.2f}x |")
    write_results(
        WORK,
        "\n".join(lines),
        command.strip(),
        {
            name: {
                "p50_ms": pct(np.asarray(v), 50),
                "p90_ms": pct(np.asarray(v), 90),
                "p99_ms": pct(np.asarray(v), 99),
                "slots": slots[name],
                "engine_cpu_us_median": statistics.median(cpu[name]),
            }
            for name, v in times.items()
        },
    )


if __name__ == "__main__":
    main()

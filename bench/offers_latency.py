"""RecommendOffers latency beside RecommendProducts, measured side by side in one run.

A `recsvc serve` (one worker, embedded Redis, features loaded, examples/offers.yaml) answers
calls from this process one at a time; the two RPCs alternate per customer so both see the
same machine noise. Run: python -m bench.offers_latency
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc

from bench.harness import machine, today
from formats import bundle as b
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "var" / "bench" / "offers"
RECSVC = [sys.executable, "-m", "recsvc.cli"]


def sh(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([*RECSVC, *args], check=True, env={**os.environ, **(env or {})})


def prepare(customers: int, products: int, env: dict[str, str]) -> tuple[Path, list[str]]:
    world, models = WORK / "world", WORK / "models"
    if not (world / "interactions.parquet").exists():
        sh("data", "synth", "--customers", str(customers), "--products", str(products),
           "--seed", "11", "--out", str(world))  # fmt: skip
    files = ["--interactions", str(world / "interactions.parquet"),
             "--catalog", str(world / "catalog.parquet")]  # fmt: skip
    if not (models / "CURRENT").exists():
        sh("train", *files, "--model-dir", str(models), "--quiet", "--baselines", "popularity")
    sh("features", "load", *files, "--customers", str(world / "customers.parquet"),
       "--model-dir", str(models), "--quiet", env=env)  # fmt: skip
    ids = b.load_bundle(b.resolve(models)).customer_ids.to_list()
    return models, [str(c) for c in ids]


def wait_ready(channel: grpc.Channel, token: str) -> None:
    stub = pb_grpc.AdminStub(channel)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=auth(token), timeout=2)
            return
        except grpc.RpcError:
            time.sleep(0.2)
    raise SystemExit("the server did not start")


def auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--products", type=int, default=2_000)
    parser.add_argument("--calls", type=int, default=3000, help="calls per RPC")
    parser.add_argument("--port", type=int, default=50271)
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    env = {
        "OPENBLAS_NUM_THREADS": "1",
        "RECSVC_REDIS_DIR": str(WORK / "redis"),
        "RECSVC_REDIS_NAMESPACE": "bench-offers",
    }
    models, customers = prepare(args.customers, args.products, env)
    token = "bench-token"
    server = subprocess.Popen(
        [
            *RECSVC,
            "serve",
            "--model-dir",
            str(models),
            "--port",
            str(args.port),
            "--workers",
            "1",
            "--metrics-port",
            "0",
        ],
        env={
            **os.environ,
            **env,
            "RECSVC_OFFERS": str(ROOT / "examples" / "offers.yaml"),
            "RECSVC_AUTH_TOKENS": f"{token}=recommend+admin",
        },
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{args.port}") as channel:
            wait_ready(channel, token)
            stub = pb_grpc.RecommenderStub(channel)
            meta = auth(token)
            rng = random.Random(0)
            times: dict[str, list[float]] = {"RecommendProducts": [], "RecommendOffers": []}
            for n in range(args.calls + 200):
                customer = rng.choice(customers)
                calls = [
                    ("RecommendProducts", lambda c=customer: stub.RecommendProducts(
                        pb.RecommendProductsRequest(customer_id=c, limit=20),
                        metadata=meta, timeout=5)),
                    ("RecommendOffers", lambda c=customer: stub.RecommendOffers(
                        pb.RecommendOffersRequest(customer_id=c, limit=3),
                        metadata=meta, timeout=5)),
                ]  # fmt: skip
                if n % 2:
                    calls.reverse()  # neither RPC always runs first
                for name, fn in calls:
                    start = time.perf_counter()
                    fn()
                    if n >= 200:  # warm-up excluded
                        times[name].append((time.perf_counter() - start) * 1000)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(f"machine: {machine()}; date {today()}")
    print(
        f"{args.calls} calls each, one at a time, alternating; 1 server worker, embedded Redis, "
        f"{len(customers):,} trained customers, {args.products:,} products, examples/offers.yaml"
    )
    print(f"{'rpc':<20} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, values in times.items():
        print(
            f"{name:<20} {statistics.median(values):>8.2f} {pct(values, 0.9):>8.2f} "
            f"{pct(values, 0.99):>8.2f} {statistics.fmean(values):>8.2f}"
        )
    ratio = statistics.median(times["RecommendOffers"]) / statistics.median(
        times["RecommendProducts"]
    )
    print(f"median ratio RecommendOffers / RecommendProducts: {ratio:.2f}")


if __name__ == "__main__":
    main()

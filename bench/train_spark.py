"""Spark beside implicit: `recsvc train` with each engine on the same input, one after the
other, as child processes (wall time, peak RSS of the whole process tree: Python and JVM).

    python -m bench.train_spark quality     # MovieLens-100k, --split random --tune, both
    python -m bench.train_spark scale [--customers 1000000 --products 100000 --events 20]

quality: the Spark bundle's held-out ndcg@20 as a share of the implicit bundle's (same split,
same seed, same metric; each engine tuned on a validation split of the training part, with
its own search space and default budget). scale: the synthetic world of bench.train_scale
(20M interactions by default) in Spark local mode on this machine, beside implicit.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from bench.harness import machine, recsvc_bin, run_tree_sampled, today
from formats.bundle import load_bundle, resolve
from training import movielens

WORK = Path("var/bench/spark")


def train(
    engine: str, inputs: list[str], models: Path, extra: list[str], master: str
) -> dict[str, Any]:
    shutil.rmtree(models, ignore_errors=True)
    spark = ["--engine", "spark", "--spark-master", master] if engine == "spark" else []
    cmd = [recsvc_bin(), "train", *inputs, "--model-dir", str(models), "--quiet", *spark, *extra]
    timed = run_tree_sampled(cmd)
    manifest = load_bundle(resolve(models)).manifest
    return {
        "engine": engine,
        "command": " ".join(["recsvc", *cmd[1:]]),
        "seconds": round(timed.seconds, 1),
        "peak_tree_rss_gib": round(timed.peak_rss_gib, 2),
        "ndcg@20": manifest["evaluation"]["models"]["als"]["ndcg@20"],
        "params": manifest["params"],
        "phases_s": manifest["timings_s"],
        "counts": manifest["counts"],
        "engine_info": manifest["engine_info"],
    }


def quality(master: str) -> None:
    paths = movielens.write(WORK / "ml100k")
    inputs = ["--interactions", str(paths["interactions"]), "--catalog", str(paths["catalog"])]
    extra = ["--split", "random", "--tune", "--no-clv-check"]
    rows = [train(e, inputs, WORK / f"ml-{e}", extra, master) for e in ("implicit", "spark")]
    report(rows, "MovieLens-100k, random 80/20 split (seed 0), --tune, k=20")


def scale(master: str, customers: int, products: int, events: float) -> None:
    world = Path("var/bench/scale") / f"world-{customers}x{products}x{events:g}"
    if not (world / "interactions.parquet").exists():
        run_tree_sampled(
            [recsvc_bin(), "data", "synth", "--customers", str(customers), "--products",
             str(products), "--events-per-customer", str(events), "--seed", "1", "--out",
             str(world)]
        )  # fmt: skip
    inputs = [
        "--interactions", str(world / "interactions.parquet"),
        "--catalog", str(world / "catalog.parquet"),
    ]  # fmt: skip
    rows = [train(e, inputs, WORK / f"scale-{e}", [], master) for e in ("implicit", "spark")]
    report(rows, f"synthetic world {customers:,} x {products:,} x {events:g} events, defaults")


def report(rows: list[dict[str, Any]], title: str) -> None:
    implicit, spark = rows
    print(f"{title}; {today()}; {machine()}")
    print("| engine | interactions | end to end s | peak RSS (tree) GiB | ndcg@20 | phases s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        phases = ", ".join(f"{k} {v:.0f}" for k, v in r["phases_s"].items() if v >= 0.5)
        print(
            f"| {r['engine']} | {r['counts']['interactions']:,} | {r['seconds']:.1f} | "
            f"{r['peak_tree_rss_gib']:.2f} | {r['ndcg@20']:.4f} | {phases} |"
        )
    print(
        f"\nspark / implicit: ndcg {spark['ndcg@20'] / implicit['ndcg@20']:.1%}, "
        f"time {spark['seconds'] / implicit['seconds']:.2f}x, "
        f"memory {spark['peak_tree_rss_gib'] / implicit['peak_tree_rss_gib']:.2f}x"
    )
    print(json.dumps(rows, indent=1, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=("quality", "scale"))
    parser.add_argument("--spark-master", default="local[*]")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--events", type=float, default=20.0, help="mean events per customer")
    args = parser.parse_args()
    if args.what == "quality":
        quality(args.spark_master)
    else:
        scale(args.spark_master, args.customers, args.products, args.events)


if __name__ == "__main__":
    main()

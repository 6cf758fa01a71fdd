"""Training at scale: `recsvc train` end to end on a large synthetic world, its peak memory,
and its time as a ratio to a bare implicit fit on the same full matrix (our overhead).

    python -m bench.train_scale [--customers 1000000 --products 100000 --events 20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from bench.harness import machine, run_timed, today
from formats.bundle import load_bundle, resolve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--events", type=float, default=20.0, help="mean events per customer")
    parser.add_argument("--workdir", type=Path, default=Path("var/bench/scale"))
    parser.add_argument("--train-args", default="", help="extra arguments for recsvc train")
    args = parser.parse_args()

    recsvc = str(Path(sys.executable).with_name("recsvc"))
    world = args.workdir / f"world-{args.customers}x{args.products}x{args.events:g}"
    if not (world / "interactions.parquet").exists():
        synth = run_timed(
            [
                recsvc,
                "data",
                "synth",
                "--customers",
                str(args.customers),
                "--products",
                str(args.products),
                "--events-per-customer",
                str(args.events),
                "--seed",
                "1",
                "--out",
                str(world),
            ]
        )
        print(f"synth: {synth.seconds:.1f} s, peak {synth.peak_rss_gib:.2f} GiB")
    models = args.workdir / "models"
    shutil.rmtree(models, ignore_errors=True)
    cmd = [
        recsvc,
        "train",
        "--interactions",
        str(world / "interactions.parquet"),
        "--catalog",
        str(world / "catalog.parquet"),
        "--model-dir",
        str(models),
        "--quiet",
        *args.train_args.split(),
    ]
    train = run_timed(cmd)
    print(train.stdout)
    manifest = load_bundle(resolve(models)).manifest
    als = manifest["params"]["als"]
    bare = run_timed(
        [
            sys.executable,
            "-m",
            "bench.bare_fit",
            "--interactions",
            str(world / "interactions.parquet"),
            "--factors",
            str(als["factors"]),
            "--iterations",
            str(als["iterations"]),
            "--regularization",
            str(als["regularization"]),
        ]
    )
    bare_s, _users, _items, nnz = bare.stdout.split()
    counts = manifest["counts"]
    result = {
        "date": today(),
        "machine": machine(),
        "command": " ".join(["recsvc", *cmd[1:]]),
        "customers": counts["customers"],
        "products": counts["products"],
        "interactions": counts["interactions"],
        "matrix_nnz": int(nnz),
        "factors": als["factors"],
        "iterations": als["iterations"],
        "end_to_end_s": round(train.seconds, 1),
        "peak_rss_gib": round(train.peak_rss_gib, 2),
        "bare_implicit_fit_s": round(float(bare_s), 1),
        "overhead_ratio": round(train.seconds / float(bare_s), 2),
        "phases_s": manifest["timings_s"],
        "index": {k: manifest["index"][k] for k in ("kind", "recall")},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

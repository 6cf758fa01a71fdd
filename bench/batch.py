"""Batch recommendations: `recsvc recommend-batch --all` for every customer of a large world,
and `recsvc audience` for one product, wall time and peak memory of each (child processes).

    python -m bench.batch [--customers 1000000 --products 100000 --limit 20 --runs 3]

The world (`recsvc data synth`) and its bundle (`recsvc train`) are built once under
--workdir and reused. The goal (issue 14): 1M customers x 20 products in under 5 minutes on
a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import resource
from pathlib import Path

import polars as pl
import psutil

from bench.harness import (
    Others,
    Timed,
    machine,
    median,
    published,
    recsvc_bin,
    run_timed,
    synth_once,
    today,
    train_bundle,
    write_results,
)


def timed_with_cpu(command: list[str]) -> tuple[Timed, float, float]:
    """The run, the CPU seconds of it and its worker processes, and the cores other users kept
    busy meanwhile (this host is shared: a busy host makes wall times long)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with Others([psutil.Process(os.getpid())]) as others:
        timed = run_timed(command)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return timed, cpu, others.cores


def side_by_side(
    models: Path, limit: int, chunks: int = 3, size: int = 2048
) -> tuple[float, float]:
    """CPU ms per customer of the batch path and of the engine one customer at a time, on
    the same chunks, in this process, alternating (median of ``chunks``)."""
    import time

    import faiss

    from formats.bundle import resolve
    from formats.types import Filter
    from recsvc.batch.recommend import answer_chunk
    from recsvc.batch.vectorised import Vectorised
    from recsvc.engine import Engine, EngineConfig

    faiss.omp_set_num_threads(1)
    engine = Engine.load(resolve(models), EngineConfig(fold_in=False))
    ids = engine.bundle.customer_ids.to_list()
    vectorised = Vectorised(engine, limit, Filter())
    fast: list[float] = []
    slow: list[float] = []
    for n in range(chunks):
        chunk = ids[n * size : (n + 1) * size]
        for times, v in ((fast, vectorised), (slow, None)):
            start = time.process_time()
            answer_chunk(engine, chunk, limit, Filter(), v)
            times.append((time.process_time() - start) * 1000 / len(chunk))
    return median(fast), median(slow)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of recommend-batch")
    parser.add_argument("--workers", type=int, default=0, help="0 = one per CPU")
    parser.add_argument("--workdir", type=Path, default=Path("var/bench/batch"))
    args = parser.parse_args()

    label = f"{args.customers}x{args.products}"
    world = synth_once(
        args.workdir / f"world-{label}",
        [
            *("--customers", str(args.customers), "--products", str(args.products)),
            *("--seed", "1"),
        ],
        f"synthetic world of {args.customers:,} customers and {args.products:,} products",
    )
    models = args.workdir / f"models-{label}"
    catalog = published(label, models) or train_bundle(
        label,
        models,
        world,
        ["--baselines", "popularity", "--eval-users", "2000", "--no-clv-check"],
        "training the bundle",
    )
    out = args.workdir / "recs.parquet"
    command = [
        recsvc_bin(),
        "recommend-batch",
        *("--all", "--limit", str(args.limit), "--out", str(out)),
        *("--model-dir", str(models), "--workers", str(args.workers), "--quiet"),
    ]
    runs, cpus, busy = [], [], []
    for n in range(args.runs):
        timed, cpu, others = timed_with_cpu(command)
        runs.append(timed)
        cpus.append(cpu)
        busy.append(others)
        print(
            f"run {n + 1}: {timed.seconds:.1f} s, {cpu:.0f} CPU s, peak "
            f"{timed.peak_rss_gib:.2f} GiB; other users kept {others:.1f} cores busy"
        )
        print("  " + timed.stdout.strip())
    written = pl.scan_parquet(out).select(pl.len(), pl.col("customer_id").n_unique()).collect()
    rows, customers = int(written.item(0, 0)), int(written.item(0, 1))
    top_product = str(
        pl.scan_parquet(out)
        .filter(pl.col("rank") == 1)
        .group_by("product_id")
        .len()
        .sort("len", descending=True)
        .collect()
        .item(0, 0)
    )
    audience_out = args.workdir / "audience.parquet"
    audience, audience_cpu, _ = timed_with_cpu(
        [
            recsvc_bin(),
            "audience",
            *("--product", top_product, "--top", "100000", "--out", str(audience_out)),
            *("--model-dir", str(models)),
        ]
    )
    out.unlink(missing_ok=True)
    fast_ms, slow_ms = side_by_side(models, args.limit)
    seconds = [r.seconds for r in runs]
    rate = customers / median(seconds)
    cores = os.cpu_count() or 1
    report = "\n".join(
        [
            f"## Batch recommendations ({today()}; {machine()})",
            "",
            f"Bundle: {catalog.customers:,} customers, {catalog.products:,} products, "
            f"index {catalog.index}.",
            "",
            "| command | customers | rows | wall time (median) | runs | CPU s (median) | "
            f"CPU s / {cores} cores | other users' busy cores | customers/s | peak RSS |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| `recsvc recommend-batch --all --limit {args.limit}` | {customers:,} | {rows:,} | "
            f"{median(seconds):.1f} s | {', '.join(f'{s:.1f}' for s in seconds)} s | "
            f"{median(cpus):.0f} | {median(cpus) / cores:.0f} s | "
            f"{', '.join(f'{b:.1f}' for b in busy)} | {rate:,.0f} | "
            f"{max(r.peak_rss_gib for r in runs):.2f} GiB |",
            f"| `recsvc audience --product {top_product} --top 100000` | {catalog.customers:,} "
            f"scored | 100,000 | {audience.seconds:.1f} s | 1 | {audience_cpu:.0f} | - | - | - | "
            f"{audience.peak_rss_gib:.2f} GiB |",
            "",
            f"CPU per customer, in one process, median of 3 chunks of 2,048 customers: batched "
            f"{fast_ms:.3f} ms, the engine one customer at a time {slow_ms:.3f} ms "
            f"({slow_ms / fast_ms:.2f}x).",
        ]
    )
    write_results(
        args.workdir,
        report,
        "python -m bench.batch " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        {
            "customers": customers,
            "rows": rows,
            "seconds": seconds,
            "cpu_seconds": cpus,
            "other_users_busy_cores": busy,
            "peak_rss_gib": [r.peak_rss_gib for r in runs],
            "audience_seconds": audience.seconds,
            "cpu_ms_per_customer": {"batched": fast_ms, "one_by_one": slow_ms},
            "index": catalog.index,
            "products": catalog.products,
        },
    )


if __name__ == "__main__":
    main()

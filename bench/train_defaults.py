"""Defaults that win: plain `recsvc train` (no flag but --quiet --no-clv-check) on the `make run`
world, MovieLens-100k split in time and at random, and (with --scale) the 1M-customer world;
its own held-out table, what it chose to serve, and whether every baseline lost. Then, for
each bundle, the in-process cost of RecommendProducts with the served model against ALS alone
(one Engine, the same customers, interleaved), and (with --ease-sizes) how long the EASE fit
takes as the catalog grows: the item-to-item model's size limits.

    python -m bench.train_defaults [--scale] [--ease-sizes 2000,5000,10000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from bench.harness import machine, pct, published, recsvc_bin, run_timed, synth_once, today
from formats.bundle import load_bundle
from recsvc.engine import Engine
from training import movielens
from training.item2item import ease_neighbours

K = 20
KEY = f"ndcg@{K}"
BASELINES = ("popularity", "itemknn")


def worlds(work: Path, scale: bool) -> list[tuple[str, dict[str, Path], list[str]]]:
    ml = movielens.write(work / "ml")
    run_world = synth_once(
        work / "world-20000x2000",
        ["--customers", "20000", "--products", "2000", "--seed", "7"],
        "the make run world",
    )
    files = {
        "interactions": run_world / "interactions.parquet",
        "catalog": run_world / "catalog.parquet",
        "customers": run_world / "customers.parquet",
    }
    cases = [
        ("make run world (20k x 2k), temporal", files, []),
        ("MovieLens-100k, temporal", ml, ["--split", "temporal"]),
        ("MovieLens-100k, random", ml, ["--split", "random"]),
    ]
    if scale:
        big = synth_once(
            Path("var/bench/scale/world-1000000x100000x20"),
            [
                "--customers",
                "1000000",
                "--products",
                "100000",
                "--events-per-customer",
                "20",
                "--seed",
                "1",
            ],
            "the 1M-customer world",
        )
        cases.append(
            (
                "1M world (1M x 100k), temporal",
                {"interactions": big / "interactions.parquet", "catalog": big / "catalog.parquet"},
                [],
            )
        )
    return cases


def per_call(bundle_dir: Path, n: int = 300, rounds: int = 3) -> dict[str, float]:
    """p50 / p99 ms of Engine.recommend with the served model and with ALS alone."""
    engine = Engine(load_bundle(bundle_dir))
    served = dict(engine.serving)
    als = {**served, "recommend": "als"}
    sizes = np.diff(engine.user_items.indptr)
    ids = engine.bundle.customer_ids.to_list()
    rng = np.random.default_rng(0)
    rows = rng.choice(np.flatnonzero(sizes > 0), size=min(n, int((sizes > 0).sum())), replace=False)
    customers = [ids[int(r)] for r in rows]
    times: dict[str, list[float]] = {"served": [], "als": []}
    for c in customers[:20]:  # warm-up
        engine.recommend(c, K)
    for _ in range(rounds):
        for c in customers:
            for name, serving in (("served", served), ("als", als)):
                engine.serving = serving
                start = time.perf_counter()
                engine.recommend(c, K)
                times[name].append((time.perf_counter() - start) * 1000)
    engine.serving = served
    return {
        f"{name}_{q}": pct(np.array(v), p)
        for name, v in times.items()
        for q, p in (("p50", 50), ("p99", 99))
    }


def ease_times(sizes: list[int], customers: int = 50_000, per_customer: int = 20) -> list[str]:
    """Seconds of the EASE fit (dense inverse) on random baskets over n products."""
    rng = np.random.default_rng(0)
    lines = ["| products | EASE fit s | dense Gram + inverse GiB |", "|---|---|---|"]
    for n in sizes:
        weights = 1.0 / np.arange(1, n + 1) ** 0.8  # power-law popularity
        items = rng.choice(n, size=(customers, per_customer), p=weights / weights.sum())
        rows = np.repeat(np.arange(customers), per_customer)
        x = csr_matrix(
            (np.ones(rows.size, np.float32), (rows, items.ravel())), shape=(customers, n)
        )
        x.data[:] = 1.0
        start = time.perf_counter()
        ease_neighbours(x, 5.0, 200)
        lines.append(f"| {n:,} | {time.perf_counter() - start:.1f} | {2 * n * n * 8 / 2**30:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", action="store_true", help="also the 1M-customer world")
    parser.add_argument("--ease-sizes", default="", help="e.g. 2000,5000,10000")
    parser.add_argument("--work", type=Path, default=Path("var/bench/train_defaults"))
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for name, files, extra in worlds(args.work, args.scale):
        models = args.work / "models" / name.split(",")[0].replace(" ", "_").replace("(", "")
        cmd = [
            recsvc_bin(),
            "train",
            "--interactions",
            str(files["interactions"]),
            "--catalog",
            str(files["catalog"]),
            "--model-dir",
            str(models),
            "--quiet",
            "--no-clv-check",
            *extra,
        ]
        if "customers" in files:
            cmd += ["--customers", str(files["customers"])]
        print(f"{name}: {' '.join(cmd[1:])}", flush=True)
        timed = run_timed(cmd)
        catalog = published(name, models)
        if catalog is None:
            raise SystemExit(f"{name}: nothing published")
        m = catalog.manifest
        ev = m["evaluation"]
        served = m["serving"]["recommend"]
        best_base = max(BASELINES, key=lambda b: ev["models"].get(b, {}).get(KEY, -1.0))
        rows.append(
            {
                "world": name,
                "command": "recsvc train " + " ".join(extra),
                "seconds": timed.seconds,
                "peak_gib": timed.peak_rss_gib,
                "serving": m["serving"],
                "models": ev["models"],
                "similar": ev["similar_products"],
                "sessions": ev.get("sessions", {}),
                "customers": ev["customers_evaluated"],
                "wins": ev["models"][served][KEY] > ev["models"][best_base][KEY],
                "best_baseline": best_base,
                "timings_s": m["timings_s"],
                "item2item": m["params"]["item2item"],
                "per_call_ms": per_call(catalog.bundle),
            }
        )
        print(json.dumps(rows[-1], indent=1, default=str), flush=True)
    lines = [f"{today()}; {machine()}", ""]
    lines += [
        "| world | served | served ndcg@20 | als | item2item | blend | best baseline | "
        "beats every baseline | customers | train s | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms = r["models"]
        cells = [f"{ms[m][KEY]:.4f}" if m in ms else "-" for m in ("als", "item2item", "blend")]
        base = r["best_baseline"]
        lines.append(
            f"| {r['world']} | {r['serving']['recommend']} | "
            f"**{ms[r['serving']['recommend']][KEY]:.4f}** | {' | '.join(cells)} | "
            f"{base} {ms[base][KEY]:.4f} | {'yes' if r['wins'] else '**NO**'} | "
            f"{r['customers']:,} | {r['seconds']:.0f} | {r['peak_gib']:.1f} |"
        )
    lines += [
        "",
        "| world | similar: als | item2item | item2vec | served | sessions: als | "
        "item2item | item2vec | served |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sim, ses = r["similar"], r["sessions"]
        s1 = [
            f"{sim[m][KEY]:.4f}" if m in sim else "-"
            for m in ("als_inner_product", "item2item", "item2vec")
        ]
        s2 = [f"{ses[m][KEY]:.4f}" if m in ses else "-" for m in ("als", "item2item", "item2vec")]
        lines.append(
            f"| {r['world']} | {' | '.join(s1)} | {r['serving']['similar']} | {' | '.join(s2)} | "
            f"{r['serving']['session']} |"
        )
    lines += [
        "",
        "| world | served | engine p50 / p99 ms, served | ALS alone |",
        "|---|---|---|---|",
    ]
    for r in rows:
        t = r["per_call_ms"]
        lines.append(
            f"| {r['world']} | {r['serving']['recommend']} | {t['served_p50']:.3f} / "
            f"{t['served_p99']:.3f} | {t['als_p50']:.3f} / {t['als_p99']:.3f} |"
        )
    if args.ease_sizes:
        lines += ["", *ease_times([int(x) for x in args.ease_sizes.split(",")])]
    text = "\n".join(lines)
    print(text)
    (args.work / "results.md").write_text(text + "\n")
    (args.work / "results.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()

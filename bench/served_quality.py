"""Quality as served: MovieLens-100k split per customer in time (the last 20% of each
customer's history held out) and at random, trained on one file, scored on the other offline
(`recsvc evaluate`) and through a running `recsvc serve` (RecommendProducts for every held-out
customer, ndcg@20 computed from the answers).

For each case: `recsvc data split`, `recsvc train [--tune] --split KIND` on train.csv (the
trainer's own evaluation carves its held-out part from that file), `recsvc evaluate` on
test.csv, then `recsvc serve` on the bundle and one RecommendProducts call (limit 20, no
filter) per customer with held-out purchases. Targets are what `recsvc evaluate` counts: held-out
purchases of products in the catalog the customer had not had in training.

    python -m bench.served_quality [--cases temporal,temporal-tune,random,random-tune]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench.harness import TOKEN, Server, machine, published, recsvc_bin, run_timed, today
from formats.bundle import load_bundle
from recsvc.client import Client
from training import movielens
from training.bundle_eval import evaluate_bundle
from training.ingest import read_interactions

K = 20
CASES = {
    "temporal": ("temporal", []),
    "temporal-tune": ("temporal", ["--tune"]),
    "random": ("random", []),
    "random-tune": ("random", ["--tune"]),
}


def served_metrics(target: str, bundle_dir: Path, test: Path) -> dict[str, float]:
    """ndcg@K, recall@K and hit rate of RecommendProducts answers for the held-out customers."""
    bundle = load_bundle(bundle_dir)
    frame, _ = read_interactions(test)
    frame = frame.filter(pl.col("event_type") == "purchase")
    products = set(bundle.products["product_id"].to_list())
    index = {c: u for u, c in enumerate(bundle.customer_ids.to_list())}
    m = bundle.user_items
    seen = {
        c: {bundle.products["product_id"][int(i)] for i in m.indices[m.indptr[u] : m.indptr[u + 1]]}
        for c, u in index.items()
    }
    targets: dict[str, set[str]] = {}
    for c, p in frame.select("customer_id", "product_id").iter_rows():
        if c in index and p in products and p not in seen[c]:
            targets.setdefault(c, set()).add(p)
    discounts = 1.0 / np.log2(np.arange(2, K + 2))
    ndcg, recall, hits, seconds = [], [], [], []
    with Client(target, token=TOKEN, timeout=30.0) as client:
        for customer, relevant in sorted(targets.items()):
            start = time.perf_counter()
            rec = client.recommend(customer, limit=K)
            seconds.append(time.perf_counter() - start)
            got = np.array([i.product_id in relevant for i in rec.items[:K]], dtype=float)
            n_rel = min(len(relevant), K)
            ndcg.append(float(got @ discounts[: len(got)]) / float(discounts[:n_rel].sum()))
            recall.append(got.sum() / n_rel)
            hits.append(float(got.any()))
    return {
        f"ndcg@{K}": float(np.mean(ndcg)),
        f"recall@{K}": float(np.mean(recall)),
        f"hitrate@{K}": float(np.mean(hits)),
        "customers": float(len(targets)),
        "p50_ms": float(np.median(seconds) * 1000),
    }


def run_case(name: str, work: Path, data: dict[str, Path]) -> dict[str, Any]:
    kind, extra = CASES[name]
    case = work / name
    shutil.rmtree(case, ignore_errors=True)
    recsvc = recsvc_bin()
    run_timed(
        [
            recsvc,
            "data",
            "split",
            "--interactions",
            str(data["interactions"]),
            "--split",
            kind,
            "--out",
            str(case),
        ]
    )
    models = case / "models"
    train = run_timed(
        [
            recsvc,
            "train",
            "--interactions",
            str(case / "train.csv"),
            "--catalog",
            str(data["catalog"]),
            "--split",
            kind,
            "--model-dir",
            str(models),
            "--quiet",
            "--no-clv-check",
            *extra,
        ]
    )
    catalog = published(name, models)
    if catalog is None:
        raise SystemExit(f"{name}: recsvc train published nothing")
    offline, counts, served = evaluate_bundle(load_bundle(catalog.bundle), case / "test.csv", K)
    server = Server(catalog, workers=1, log=case / "serve.log")
    try:
        server.wait_ready()
        online = served_metrics(server.target, catalog.bundle, case / "test.csv")
    finally:
        server.stop()
    manifest = catalog.manifest
    return {
        "case": name,
        "command": f"recsvc train --split {kind} {' '.join(extra)}".strip(),
        "train_s": train.seconds,
        "serving": manifest["serving"],
        "params": {
            "weights": manifest["params"]["weights"],
            "als": manifest["params"]["als"],
            "item2item": manifest["params"]["item2item"],
        },
        "internal": manifest["evaluation"]["models"],
        "offline": offline,
        "served": served,
        "counts": counts,
        "online": online,
    }


def report(rows: list[dict[str, Any]]) -> str:
    key = f"ndcg@{K}"
    lines = [
        f"MovieLens-100k, k={K}; {today()}; {machine()}",
        "",
        "| case | served model | trainer's table: served / best baseline | `recsvc evaluate` "
        "ndcg@20 (served) | als | item2item | blend | itemknn | popularity | gRPC ndcg@20 | "
        "gRPC recall@20 | customers | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        internal, offline = r["internal"], r["offline"]
        served = r["served"]
        base = max(v[key] for m, v in internal.items() if m in ("popularity", "itemknn"))
        cells = [
            f"{offline[m][key]:.4f}" if m in offline else "-"
            for m in ("als", "item2item", "blend", "itemknn", "popularity")
        ]
        lines.append(
            f"| {r['command']} | {served} | {internal[served][key]:.4f} / {base:.4f} | "
            f"**{offline[served][key]:.4f}** | {' | '.join(cells)} | "
            f"**{r['online'][key]:.4f}** | {r['online'][f'recall@{K}']:.4f} | "
            f"{int(r['online']['customers'])} | {r['train_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated: " + ",".join(CASES)
    )
    parser.add_argument("--work", type=Path, default=Path("var/bench/served_quality"))
    args = parser.parse_args()
    data = movielens.write(args.work / "ml")
    rows = [run_case(name, args.work, data) for name in args.cases.split(",") if name]
    text = report(rows)
    print(text)
    (args.work / "results.md").write_text(text + "\n")
    (args.work / "results.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()

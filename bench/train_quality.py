"""Quality on MovieLens-100k: our default model with --tune vs the baselines, one split.

Protocol (issue 3): random 80/20 split of the interactions (seed 0); test items of customers
or products unseen in training dropped; already-seen items filtered; full ranking; every
model's hyperparameters chosen on a validation split carved from the training part (seed 1),
then refit on the whole training part and scored once on the test part.

    python -m bench.train_quality
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import machine, today
from formats.weights import WeightConfig
from training import movielens
from training.config import TrainConfig
from training.dataset import binary_matrix, build_dataset, user_item_matrix
from training.ingest import read_catalog, read_interactions
from training.metrics import evaluate
from training.models import ALSModel, ALSParams, ItemKNNModel
from training.split import Split, make_split
from training.train import run

K = 20
# Fit on a split's training part, return a scorer over customer indexes.
Fitter = Callable[[Split, Any], Callable[[np.ndarray], np.ndarray]]


def ease_fitter(split: Split, lam: float) -> Callable[[np.ndarray], np.ndarray]:
    """EASE (Steck 2019): a dense items x items model, only for small catalogs."""
    x = binary_matrix(split.train.user, split.train.item, split.targets.shape)
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return lambda u: np.asarray(x[u] @ b, dtype=np.float32)


def knn_fitter(split: Split, k: int) -> Callable[[np.ndarray], np.ndarray]:
    x = binary_matrix(split.train.user, split.train.item, split.targets.shape)
    model = ItemKNNModel(k)
    model.fit(x)
    return lambda u: model.score(u, x)


def als_fitter(split: Split, params: ALSParams) -> Callable[[np.ndarray], np.ndarray]:
    plain = WeightConfig(confidence="binary", user_exponent=0.0, item_exponent=0.0)
    x = user_item_matrix(split.train, plain)
    model = ALSModel(params)
    model.fit(x)
    return lambda u: model.score(u, x)


def score(split: Split, scorer: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
    seen = binary_matrix(split.train.user, split.train.item, split.targets.shape)
    return evaluate(scorer, seen, split.targets, K)


def pick(
    name: str, fitter: Fitter, candidates: Sequence[Any], val: Split, test: Split
) -> dict[str, Any]:
    start = time.perf_counter()
    scores = [score(val, fitter(val, c))[f"ndcg@{K}"] for c in candidates]
    best = candidates[int(np.argmax(scores))]
    result = score(test, fitter(test, best))
    chosen = best if not isinstance(best, ALSParams) else best.to_dict()
    return {
        "model": name,
        "fits": len(candidates),
        "tune_s": time.perf_counter() - start,
        "val_ndcg": max(scores),
        "chosen": chosen,
        **result,
    }


def main() -> None:
    work = Path("var/bench/ml100k")
    paths = movielens.write(work)
    frame, _ = read_interactions(paths["interactions"])
    catalog, _ = read_catalog(paths["catalog"])
    ds, _ = build_dataset(frame, catalog)
    test = make_split(ds, "random", 0.2, seed=0)
    val = make_split(test.train, "random", 0.2, seed=1)
    rows: list[dict[str, Any]] = []

    start = time.perf_counter()
    cfg = TrainConfig(split="random", seed=0, tune=True, progress=False)
    ours = run(
        paths["interactions"], work / "models", cfg, catalog=paths["catalog"], echo=lambda _: None
    )
    ev = ours.manifest["evaluation"]["models"]
    tuned = ours.manifest["params"]
    rows.append(
        {
            "model": "recsvc ALS, count-weighted confidence (--tune)",
            "fits": len(ours.manifest["tuning"]),
            "tune_s": ours.manifest["timings_s"]["tune"],
            "val_ndcg": max(t["ndcg"] for t in ours.manifest["tuning"]),
            "chosen": {
                **tuned["als"],
                **{
                    k: tuned["weights"][k] for k in ("confidence", "user_exponent", "item_exponent")
                },
            },
            "train_end_to_end_s": time.perf_counter() - start,
            **ev["als"],
        }
    )
    rows.append(
        {
            "model": "popularity",
            "fits": 1,
            "tune_s": 0.0,
            "val_ndcg": float("nan"),
            "chosen": "-",
            **ev["popularity"],
        }
    )
    rows.append(pick("item-kNN cosine (top-K)", knn_fitter, [50, 100, 200, 400, 2000], val, test))
    narrow = [
        ALSParams(factors=f, regularization=r, alpha=a)
        for f in (64, 128)
        for r in (0.01, 0.1, 1.0)
        for a in (1.0, 10.0, 40.0)
    ]
    rows.append(pick("implicit ALS, narrow grid (reg 0.01-1)", als_fitter, narrow, val, test))
    wide = [
        ALSParams(factors=128, regularization=r, alpha=a)
        for r in (10.0, 30.0, 100.0)
        for a in (2.0, 5.0, 10.0, 20.0)
    ]
    rows.append(pick("implicit ALS, wide grid (reg 10-100)", als_fitter, wide, val, test))
    rows.append(
        pick(
            "EASE (dense; lambda tuned)",
            ease_fitter,
            [100.0, 200.0, 300.0, 500.0, 800.0, 1200.0],
            val,
            test,
        )
    )

    print(f"MovieLens-100k, random 80/20 split (seed 0), k={K}; {today()}; {machine()}")
    print(f"test customers: {len(test.eval_users)}, validation customers: {len(val.eval_users)}\n")
    print("| model | ndcg@20 | recall@20 | map@20 | hitrate@20 | coverage@20 | fits | tune s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r[f'ndcg@{K}']:.4f} | {r[f'recall@{K}']:.4f} | {r[f'map@{K}']:.4f}"
            f" | {r[f'hitrate@{K}']:.4f} | {r[f'coverage@{K}']:.4f} | {r['fits']} |"
            f" {r['tune_s']:.1f} |"
        )
    print()
    print(
        json.dumps(
            [{k: v for k, v in r.items() if k in ("model", "chosen", "val_ndcg")} for r in rows],
            indent=1,
            default=str,
        )
    )


if __name__ == "__main__":
    main()

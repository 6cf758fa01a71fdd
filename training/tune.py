"""Hyperparameter search for ALS on a validation split carved from the training part.

The test part is never seen here. The search space is wide on purpose: on MovieLens-100k ALS
wants regularization in the tens and binary confidence, far from the library defaults.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from training.dataset import Confidence, Dataset, WeightConfig, binary_matrix, user_item_matrix
from training.metrics import evaluate
from training.models import ALSModel, ALSParams
from training.split import make_split

if TYPE_CHECKING:
    from training.train import TrainConfig


@dataclass(frozen=True)
class Trial:
    weights: WeightConfig
    params: ALSParams
    score: float = float("nan")
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "confidence": self.weights.confidence,
            "user_exponent": round(self.weights.user_exponent, 4),
            "item_exponent": round(self.weights.item_exponent, 4),
            **self.params.to_dict(),
            "ndcg": self.score,
            "seconds": round(self.seconds, 2),
        }


CONFIDENCES: tuple[Confidence, ...] = ("binary", "log", "bm25")


def search_space(
    weights: WeightConfig, base: ALSParams, trials: int = 0, seed: int = 0
) -> list[tuple[WeightConfig, ALSParams]]:
    """Random draws from the default space (36 unless ``trials`` says otherwise).

    The ranges come from a wide first search on MovieLens-100k (regularization 5-200, alpha
    1-30, exponents -0.2-1): the best validation scores all lay inside these.
    """
    rng = np.random.default_rng(seed)
    draws = []
    for i in range(trials or 36):
        confidence = CONFIDENCES[i % len(CONFIDENCES)]
        draws.append(
            (
                replace(
                    weights,
                    confidence=confidence,
                    user_exponent=float(rng.uniform(0.25, 0.6)),
                    item_exponent=float(rng.uniform(-0.05, 0.45)),
                ),
                replace(
                    base,
                    regularization=float(np.exp(rng.uniform(np.log(20.0), np.log(60.0)))),
                    alpha=float(np.exp(rng.uniform(np.log(2.0), np.log(10.0)))),
                ),
            )
        )
    return draws


def tune(
    train: Dataset,
    cfg: TrainConfig,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> tuple[WeightConfig, ALSParams, list[Trial]]:
    """Try each candidate on a validation split of ``train``; return the best and the table."""
    val = make_split(train, cfg.split, cfg.test_fraction, cfg.seed + 1, cfg.target_events)
    users = val.eval_users
    if len(users) > cfg.eval_users:
        users = np.sort(
            np.random.default_rng(cfg.seed).choice(users, cfg.eval_users, replace=False)
        )
    seen = binary_matrix(val.train.user, val.train.item, val.targets.shape)
    trials: list[Trial] = []
    candidates = search_space(cfg.weights, cfg.als, cfg.tune_trials, cfg.seed)
    for weights, params in tqdm(candidates, desc="tune", disable=not progress, leave=False):
        start = time.perf_counter()
        model = ALSModel(params)
        model.fit(user_item_matrix(val.train, weights))
        result = evaluate(partial(model.score, user_items=seen), seen, val.targets, cfg.k, users)
        trials.append(Trial(weights, params, result[f"ndcg@{cfg.k}"], time.perf_counter() - start))
    best = max(trials, key=lambda t: t.score)
    echo(
        f"tune: {len(trials)} candidates on a validation split of the training part; "
        f"best ndcg@{cfg.k} {best.score:.4f} with "
        + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in best.to_dict().items()
            if k not in ("ndcg", "seconds")
        )
    )
    return best.weights, best.params, trials

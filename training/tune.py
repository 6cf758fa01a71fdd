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
    confidence: Confidence
    params: ALSParams
    score: float = float("nan")
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "confidence": self.confidence,
            **self.params.to_dict(),
            "ndcg": self.score,
            "seconds": round(self.seconds, 2),
        }


def search_space(
    base: ALSParams, trials: int = 0, seed: int = 0
) -> list[tuple[Confidence, ALSParams]]:
    """The default grid; ``trials`` > 0 keeps a random subset of that size."""
    grid: list[tuple[Confidence, ALSParams]] = []
    for confidence in ("binary", "log"):
        for factors in (64, 128, 256):
            for reg in (1.0, 5.0, 20.0, 50.0):
                for alpha in (1.0, 5.0):
                    grid.append(
                        (
                            confidence,
                            replace(base, factors=factors, regularization=reg, alpha=alpha),
                        )
                    )
    if 0 < trials < len(grid):
        pick = np.random.default_rng(seed).choice(len(grid), size=trials, replace=False)
        grid = [grid[i] for i in sorted(pick)]
    return grid


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
    matrices = {}
    trials: list[Trial] = []
    candidates = search_space(cfg.als, cfg.tune_trials, cfg.seed)
    for confidence, params in tqdm(candidates, desc="tune", disable=not progress, leave=False):
        if confidence not in matrices:
            matrices[confidence] = user_item_matrix(
                val.train, replace(cfg.weights, confidence=confidence)
            )
        start = time.perf_counter()
        model = ALSModel(params)
        model.fit(matrices[confidence])
        result = evaluate(partial(model.score, user_items=seen), seen, val.targets, cfg.k, users)
        trials.append(
            Trial(confidence, params, result[f"ndcg@{cfg.k}"], time.perf_counter() - start)
        )
    best = max(trials, key=lambda t: t.score)
    echo(
        f"tune: {len(trials)} candidates on a validation split of the training part; "
        f"best ndcg@{cfg.k} {best.score:.4f} with {best.confidence} confidence, "
        f"factors={best.params.factors}, regularization={best.params.regularization}, "
        f"alpha={best.params.alpha}"
    )
    return replace(cfg.weights, confidence=best.confidence), best.params, trials

"""Hyperparameter search for ALS and the item-to-item model on a validation split carved from
the training part.

The test part is never seen here. The search space is wide on purpose: on MovieLens-100k ALS
wants regularization in the tens and binary confidence, far from the library defaults.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
from tqdm import tqdm

from formats.weights import Confidence, WeightConfig
from training.config import TrainConfig
from training.dataset import (
    Dataset,
    binary_matrix,
    confidence_matrix,
    summarize,
    user_item_matrix,
)
from training.item2item import Item2ItemModel, Item2ItemParams
from training.metrics import evaluate
from training.models import ALSModel, ALSParams
from training.split import make_split, sample_users


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
            "sequence_decay": round(self.weights.sequence_decay, 4),
            **self.params.to_dict(),
            "ndcg": self.score,
            "seconds": round(self.seconds, 2),
        }


CONFIDENCES: tuple[Confidence, ...] = ("binary", "log", "bm25")
# Sequence decays of the wide stage, cycled through like the confidences: 0 (no decay) is
# always among the candidates, so validation can reject the decay (a random split does).
DECAYS: tuple[float, ...] = (0.0, 2.0, 4.0, 6.0)
Candidate = tuple[WeightConfig, ALSParams]


@dataclass(frozen=True)
class Space:
    """Log-uniform ranges for regularization and alpha, uniform for the count exponents."""

    regularization: tuple[float, float] = (0.5, 100.0)
    alpha: tuple[float, float] = (1.0, 50.0)
    user_exponent: tuple[float, float] = (0.0, 0.7)
    item_exponent: tuple[float, float] = (-0.1, 0.5)
    decays: tuple[float, ...] = DECAYS

    def around(self, best: Candidate) -> Space:
        """A narrower space centred on ``best`` (factor 1.65 either way, exponents +-0.1,
        the decay and its neighbours 1 either way)."""
        w, p = best
        d = w.sequence_decay
        return Space(
            regularization=(p.regularization / 1.65, p.regularization * 1.65),
            alpha=(p.alpha / 1.65, p.alpha * 1.65),
            user_exponent=(w.user_exponent - 0.1, w.user_exponent + 0.1),
            item_exponent=(w.item_exponent - 0.1, w.item_exponent + 0.1),
            decays=(d,) if d == 0 else (d, max(d - 1.0, 0.0), d + 1.0),
        )

    def draw(
        self,
        rng: np.random.Generator,
        n: int,
        weights: WeightConfig,
        base: ALSParams,
        confidences: tuple[Confidence, ...] = CONFIDENCES,
    ) -> list[Candidate]:
        def log_uniform(lo: float, hi: float) -> float:
            return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

        return [
            (
                replace(
                    weights,
                    confidence=confidences[i % len(confidences)],
                    user_exponent=float(rng.uniform(*self.user_exponent)),
                    item_exponent=float(rng.uniform(*self.item_exponent)),
                    sequence_decay=self.decays[(i // len(confidences)) % len(self.decays)],
                ),
                replace(
                    base,
                    regularization=log_uniform(*self.regularization),
                    alpha=log_uniform(*self.alpha),
                ),
            )
            for i in range(n)
        ]


def tune(
    train: Dataset,
    cfg: TrainConfig,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    new_model: Callable[[ALSParams], ALSModel] = ALSModel,
    space: Space | None = None,
    default_trials: int = 36,
) -> tuple[WeightConfig, ALSParams, list[Trial]]:
    """Try each candidate on a validation split of ``train``; return the best and the table.

    ``new_model``, ``space`` and ``default_trials`` come from the engine (training.engines):
    Spark's regularization is scaled per customer and product, so it searches elsewhere.
    """
    space = space or Space()
    val = make_split(train, cfg.split, cfg.test_fraction, cfg.seed + 1, cfg.target_events)
    users = sample_users(val.eval_users, cfg.eval_users, cfg.seed)
    seen = binary_matrix(val.train.user, val.train.item, val.targets.shape)

    def fit_and_score(candidate: Candidate) -> Trial:
        weights, params = candidate
        start = time.perf_counter()
        model = new_model(params)
        model.fit(user_item_matrix(val.train, weights))
        result = evaluate(partial(model.score, user_items=seen), seen, val.targets, cfg.k, users)
        return Trial(weights, params, result[f"ndcg@{cfg.k}"], time.perf_counter() - start)

    # Coarse to fine: half the budget over a space wide enough for sparse retail data
    # (wants little regularization) and MovieLens (wants it in the tens), half around the best.
    rng = np.random.default_rng(cfg.seed)
    budget = cfg.tune_trials or default_trials
    wide = budget - budget // 2
    bar = tqdm(total=budget, desc="tune", disable=not progress, leave=False)
    trials: list[Trial] = []
    for candidate in space.draw(rng, wide, cfg.weights, cfg.als):
        trials.append(fit_and_score(candidate))
        bar.update(1)
    first = max(trials, key=lambda t: t.score)
    local = space.around((first.weights, first.params))
    for candidate in local.draw(
        rng, budget - wide, cfg.weights, cfg.als, (first.weights.confidence,)
    ):
        trials.append(fit_and_score(candidate))
        bar.update(1)
    bar.close()
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


@dataclass(frozen=True)
class Item2ItemTrial:
    params: Item2ItemParams
    score: float = float("nan")
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        p = self.params
        return {
            "kind": p.kind,
            "l2": p.l2,
            "decay": p.decay,
            "recent": p.recent,
            "neighbours": p.neighbours,
            "ndcg": self.score,
            "seconds": round(self.seconds, 2),
        }


# The default run's small search: the query's sequence decay (free: one fit serves all) and
# two penalties; --tune widens it. Both keep 0 (no decay) among the candidates.
ITEM2ITEM_DECAYS = (0.0, 1.0, 2.0, 4.0, 8.0)
ITEM2ITEM_L2 = (2.0, 8.0)
TUNED_DECAYS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
TUNED_L2 = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
TUNED_RECENT = (25, 50, 100, 200)


def tune_item2item(
    train: Dataset,
    cfg: TrainConfig,
    weights: WeightConfig,
    echo: Callable[[str], None] = print,
) -> tuple[Item2ItemParams, list[Item2ItemTrial]]:
    """Choose the item-to-item model's penalty, query decay and length on a validation split
    of ``train`` (a small grid by default, a wider one with ``cfg.tune``)."""
    base = cfg.item2item
    val = make_split(train, cfg.split, cfg.test_fraction, cfg.seed + 1, cfg.target_events)
    users = sample_users(val.eval_users, cfg.eval_users, cfg.seed)
    if len(users) == 0:
        return base, []
    seen = binary_matrix(val.train.user, val.train.item, val.targets.shape)
    summary = summarize(val.train, weights)
    matrix = confidence_matrix(summary, weights)
    kind = base.resolved(train.n_items)
    l2s = (base.l2,) if kind == "cosine" else (TUNED_L2 if cfg.tune else ITEM2ITEM_L2)
    decays = TUNED_DECAYS if cfg.tune else ITEM2ITEM_DECAYS
    recents = TUNED_RECENT if cfg.tune else (base.recent,)
    trials: list[Item2ItemTrial] = []
    bar = tqdm(
        total=len(l2s) * len(decays) + len(recents),
        desc="tune item2item",
        disable=not cfg.progress,
        leave=False,
    )
    models: dict[float, Item2ItemModel] = {}

    def trial(l2: float, decay: float, recent: int) -> None:
        start = time.perf_counter()
        if l2 not in models:
            models.clear()  # one neighbour table in memory at a time
            models[l2] = Item2ItemModel(replace(base, l2=l2))
            models[l2].fit(matrix)
        query = summary.query(weights, decay, recent)
        scorer = partial(models[l2].score, user_items=query)
        result = evaluate(scorer, seen, val.targets, cfg.k, users)
        params = replace(base, l2=l2, decay=decay, recent=recent)
        trials.append(Item2ItemTrial(params, result[f"ndcg@{cfg.k}"], time.perf_counter() - start))
        bar.update(1)

    # Penalty and decay first (one fit per penalty serves every decay), then the query length.
    for l2 in l2s:
        for decay in decays:
            trial(l2, decay, base.recent)
    first = max(trials, key=lambda t: t.score).params
    for recent in recents:
        if recent != first.recent:
            trial(first.l2, first.decay, recent)
    bar.close()
    best = max(trials, key=lambda t: t.score)
    echo(
        f"item2item: {len(trials)} candidates ({kind}) on a validation split of the training "
        f"part; best ndcg@{cfg.k} {best.score:.4f} with l2={best.params.l2:g}, "
        f"decay={best.params.decay:g}, recent={best.params.recent}"
    )
    return best.params, trials

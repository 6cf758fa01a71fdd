"""The held-out evaluation of one training run: every model and baseline on the same split,
the similar-products table, the choice of what serves, and the printed tables."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from training.dataset import Dataset, binary_matrix
from training.index import normalized
from training.item2item import Item2ItemModel
from training.item2vec import Item2VecModel
from training.metrics import Scorer, evaluate
from training.models import ALSModel
from training.split import Split, by_customer_then_time

log = logging.getLogger(__name__)

SERVABLE = ("als", "item2item", "blend")  # what RecommendProducts can serve
BLEND_WEIGHTS = (0.25, 1.0, 4.0)  # item-to-item's share, relative to the score scales


def evaluate_scorers(
    scorers: Mapping[str, Scorer], split: Split, k: int, users: np.ndarray
) -> dict[str, dict[str, float]]:
    seen = binary_matrix(split.train.user, split.train.item, split.targets.shape)
    return {name: evaluate(s, seen, split.targets, k, users) for name, s in scorers.items()}


def blend_scale(
    als: ALSModel, item2item: Item2ItemModel, query: csr_matrix, users: np.ndarray
) -> float:
    """ALS's typical top score over item-to-item's: blend weights are relative to it."""
    sample = users[:: max(1, len(users) // 500)]
    als_top = np.max(als.score(sample, query), axis=1)
    i2i_top = np.max(item2item.raw_scores(sample, query), axis=1)
    ok = i2i_top > 0
    if not ok.any():
        return 1.0
    return float(np.mean(np.abs(als_top[ok])) / np.mean(i2i_top[ok]))


@dataclass(frozen=True)
class Blend:
    """ALS score + beta x item-to-item score (beta absolute, as serving applies it)."""

    als: ALSModel
    item2item: Item2ItemModel
    query: csr_matrix
    beta: float

    def __call__(self, users: np.ndarray) -> np.ndarray:
        scores: np.ndarray = self.als.score(users, self.query) + self.beta * (
            self.item2item.raw_scores(users, self.query)
        )
        return scores


@dataclass(frozen=True)
class Choice:
    model: str  # one of SERVABLE
    beta: float  # the blend's weight (0 unless model is "blend")
    winner_baseline: str | None  # a baseline at least as good as the served model


def choose_serving(
    metrics: dict[str, dict[str, float]], betas: Mapping[str, float], k: int, serve: str = "auto"
) -> Choice:
    """The servable model with the best ndcg@k (ALS on ties), or ``serve`` when it names one
    that was evaluated; flags a baseline that scores at least as well."""
    key = f"ndcg@{k}"
    servable = [m for m in metrics if m in SERVABLE]
    best = max(servable, key=lambda m: (metrics[m][key], m == "als"))
    if serve != "auto":
        if serve not in servable:
            raise ValueError(f"cannot serve {serve!r}: only {servable} were evaluated")
        best = serve
    baselines = [m for m in metrics if m not in servable]
    winner = max(baselines, key=lambda m: metrics[m][key], default=None)
    if winner is not None and metrics[winner][key] < metrics[best][key]:
        winner = None
    return Choice(best, betas.get(best, 0.0), winner)


def last_items(ds: Dataset) -> np.ndarray:
    """Each customer's most recent product (-1 for none): the query for similar-product eval."""
    order = by_customer_then_time(ds)
    last = np.full(ds.n_users, -1, dtype=np.int64)
    last[ds.user[order]] = ds.item[order]
    return last


def evaluate_similar(
    als: ALSModel,
    item2item: Item2ItemModel | None,
    item2vec: Item2VecModel | None,
    knn_similarity: csr_matrix | None,
    split: Split,
    k: int,
    users: np.ndarray,
) -> dict[str, dict[str, float]]:
    """Similar-products quality ("next products from the last one"): from a customer's last
    product, how well do its nearest neighbours predict what they interact with next?
    ``als_inner_product``, ``item2item`` and ``item2vec`` can serve SimilarProducts (the
    best one does); the others are alternatives."""
    last = last_items(split.train)
    users = users[last[users] >= 0]
    vectors = als.item_factors
    unit = normalized(vectors)
    scorers: dict[str, Scorer] = {
        "als_inner_product": lambda u: vectors[last[u]] @ vectors.T,
        "als_cosine": lambda u: unit[last[u]] @ unit.T,
    }
    one_hot = csr_matrix(
        (np.ones(len(last)), (np.arange(len(last)), np.maximum(last, 0))),
        shape=(len(last), split.targets.shape[1]),
        dtype=np.float32,
    )
    if item2item is not None:
        scorers["item2item"] = lambda u: item2item.score(u, one_hot)
    if item2vec is not None:
        scorers["item2vec"] = lambda u: item2vec.score(u, one_hot)
    if knn_similarity is not None:
        sim = knn_similarity

        def knn_scorer(u: np.ndarray) -> np.ndarray:
            return np.asarray(sim[last[u]].todense(), dtype=np.float32)

        scorers["itemknn"] = knn_scorer
    return evaluate_scorers(scorers, split, k, users)


def choose_task(
    table: dict[str, dict[str, float]], k: int, serve: str = "auto", task: str = "similar"
) -> str:
    """What serves a task (similar products, sessions): "als", "item2item" or "item2vec",
    the best by ndcg@k (ALS on ties) unless ``serve`` names one that was evaluated."""
    names = {"als_inner_product": "als", "als": "als", "item2item": "item2item"}
    names["item2vec"] = "item2vec"
    scores = {names[m]: v[f"ndcg@{k}"] for m, v in table.items() if m in names}
    if serve != "auto":
        if serve not in scores:
            raise ValueError(f"cannot serve {task} from {serve!r}: it was not evaluated")
        return serve
    return max(scores, key=lambda m: (scores[m], m == "als"))


def format_table(
    metrics: dict[str, dict[str, float]], title: str = "", marks: Mapping[str, str] | None = None
) -> str:
    names = list(next(iter(metrics.values())).keys()) if metrics else []
    labels = {m: m + (f" ({marks[m]})" if marks and m in marks else "") for m in metrics}
    width = max([len(v) for v in labels.values()] + [12])
    lines = [title] if title else []
    lines.append(f"{'model':<{width}}  " + "  ".join(f"{n:>12}" for n in names))
    for model, values in metrics.items():
        lines.append(
            f"{labels[model]:<{width}}  " + "  ".join(f"{values[n]:>12.4f}" for n in names)
        )
    return "\n".join(lines)


def baseline_warning(choice: Choice, metrics: dict[str, dict[str, float]], k: int) -> str | None:
    """A loud banner when a baseline scores at least as well as what is served."""
    if choice.winner_baseline is None:
        return None
    key = f"ndcg@{k}"
    row = choice.model
    text = (
        f"WARNING: the baseline {choice.winner_baseline!r} ({key} "
        f"{metrics[choice.winner_baseline][key]:.4f}) scores at least as well as the served model "
        f"{row!r} ({metrics[row][key]:.4f}). Try `recsvc train --tune`, or check the data."
    )
    bar = "!" * min(len(text), 100)
    return f"{bar}\n{text}\n{bar}"

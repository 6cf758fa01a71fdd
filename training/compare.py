"""Every servable model and baseline fitted on one training part and compared on its held-out
split: what RecommendProducts serves (ALS, item-to-item or their blend), what serves similar
products and anonymous sessions (ALS, item-to-item or item2vec)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from scipy.sparse import csr_matrix

from formats.weights import WeightConfig
from training.config import TrainConfig
from training.dataset import Summary, confidence_matrix
from training.evaluation import (
    BLEND_WEIGHTS,
    Blend,
    Choice,
    blend_scale,
    choose_serving,
    choose_task,
    evaluate_scorers,
    evaluate_similar,
)
from training.item2item import Item2ItemModel, Item2ItemParams
from training.item2vec import Item2VecModel
from training.metrics import Scorer
from training.models import ALSModel, ALSParams, ItemKNNModel, PopularityModel
from training.sessions import evaluate_sessions, sequences
from training.split import Split

SERVING_ORDER = ("als", "item2item", "blend")  # table rows: servable models, then baselines


@dataclass
class Fitted:
    weights: WeightConfig
    matrix: csr_matrix
    query: csr_matrix | None
    als: ALSModel
    item2item: Item2ItemModel | None = None
    item2vec: Item2VecModel | None = None
    knn: ItemKNNModel | None = None
    popularity: PopularityModel | None = None
    betas: dict[str, float] = field(default_factory=dict)
    scorers: dict[str, Scorer] = field(default_factory=dict)

    def scorer_of(self, model: str, beta: float = 0.0) -> Scorer:
        """The scorer of a servable model ("blend": the blend with weight ``beta``)."""
        if model == "blend":
            return next(self.scorers[n] for n, b in self.betas.items() if b == beta)
        return self.scorers[model]


def fit_models(
    split: Split,
    summary: Summary,
    users: np.ndarray,
    cfg: TrainConfig,
    weights: WeightConfig,
    als_params: ALSParams,
    i2i_params: Item2ItemParams | None,
    new_model: Callable[[ALSParams], ALSModel] = ALSModel,
) -> Fitted:
    """ALS, the item-to-item model and its blends (``i2i_params`` None: ALS alone), item2vec
    (``cfg.use_item2vec``, small catalogs) and the baselines, on ``split.train``;
    ``new_model`` makes the ALS model (training.engines: implicit's or Spark's)."""
    matrix = confidence_matrix(summary, weights)
    als = new_model(als_params)
    als.fit(matrix, progress=cfg.progress)
    f = Fitted(weights, matrix, None, als)
    f.scorers["als"] = partial(als.score, user_items=matrix)
    if i2i_params is not None:
        f.item2item = Item2ItemModel(i2i_params)
        f.item2item.fit(matrix, progress=cfg.progress)
        f.query = summary.query(weights, i2i_params.decay, i2i_params.recent)
        f.scorers["item2item"] = partial(f.item2item.score, user_items=f.query)
        scale = blend_scale(als, f.item2item, f.query, users)
        for w in BLEND_WEIGHTS:
            f.betas[f"blend {w:g}"] = w * scale
            f.scorers[f"blend {w:g}"] = Blend(als, f.item2item, f.query, w * scale)
    tokens = split.train.n_rows  # an upper bound of the products in all histories
    if (
        cfg.use_item2vec
        and split.train.n_items <= cfg.item2vec.max_items
        and tokens <= cfg.item2vec.max_tokens
    ):
        f.item2vec = Item2VecModel(cfg.item2vec)
        f.item2vec.fit_sequences(sequences(split.train), split.train.n_items, cfg.progress)
    if "popularity" in cfg.baselines:
        f.popularity = PopularityModel()
        f.popularity.fit(matrix)
        f.scorers["popularity"] = partial(f.popularity.score, user_items=matrix)
    if "itemknn" in cfg.baselines:
        f.knn = ItemKNNModel()
        f.knn.fit(matrix)
        f.scorers["itemknn"] = partial(f.knn.score, user_items=matrix)
    return f


@dataclass(frozen=True)
class Comparison:
    metrics: dict[str, dict[str, float]]  # RecommendProducts: servable models, baselines
    similar: dict[str, dict[str, float]]
    sessions: dict[str, dict[str, float]]
    choice: Choice  # what RecommendProducts serves
    similar_model: str
    session_model: str

    @property
    def serving(self) -> dict[str, str]:
        """The manifest's ``serving`` (docs/bundle-format.md)."""
        return {
            "recommend": self.choice.model,
            "similar": self.similar_model,
            "session": self.session_model,
        }

    def uses(self, model: str) -> bool:
        return model in (self.similar_model, self.session_model) or (
            model == "item2item" and self.choice.model != "als"
        )


def compare(fitted: Fitted, split: Split, users: np.ndarray, cfg: TrainConfig) -> Comparison:
    """Evaluate everything side by side and choose (ValueError when a forced choice names a
    model that was not evaluated)."""
    metrics = evaluate_scorers(fitted.scorers, split, cfg.k, users)
    # Keep the best blend only: the table shows what could be served.
    blends = [m for m in metrics if m.startswith("blend ")]
    betas = dict(fitted.betas)
    if blends:
        best = max(blends, key=lambda m: metrics[m][f"ndcg@{cfg.k}"])
        betas["blend"] = betas[best]
        metrics["blend"] = metrics[best]
        for m in blends:
            del metrics[m]

    def order(m: str) -> int:
        return SERVING_ORDER.index(m) if m in SERVING_ORDER else len(SERVING_ORDER)

    metrics = {m: metrics[m] for m in sorted(metrics, key=order)}
    knn = fitted.knn.similarity if fitted.knn is not None else None
    i2i, i2v = fitted.item2item, fitted.item2vec
    similar = evaluate_similar(fitted.als, i2i, i2v, knn, split, cfg.k, users)
    sessions = evaluate_sessions(
        split, users, cfg.k, fitted.weights, fitted.matrix, fitted.als, i2i, i2v
    )
    return Comparison(
        metrics=metrics,
        similar=similar,
        sessions=sessions,
        choice=choose_serving(metrics, betas, cfg.k, cfg.serve),
        similar_model=choose_task(similar, cfg.k, cfg.serve_similar, "similar products"),
        session_model=(
            choose_task(sessions, cfg.k, cfg.serve_session, "sessions") if sessions else "als"
        ),
    )

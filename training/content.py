"""Fitting the content model (``formats.content``): ridge regression from catalog attributes
to the ALS item vectors of the products that have interactions.

The vocabulary keeps features seen on at least ``min_count`` such products (at most
``max_features``, the most frequent); the ridge penalty is the one of ``regularization`` that
predicts a held-out tenth of those products best (R^2), refit on all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from formats.attributes import attribute_columns
from formats.content import ContentModel, ContentSpec, featurize, numeric_values, token_table


@dataclass(frozen=True)
class ContentConfig:
    min_count: int = 2  # products (with interactions) a feature must appear on
    max_features: int = 2048  # ridge solves a dense features x features system
    bins: int = 8  # quantile bins per numeric attribute
    regularization: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    holdout: float = 0.1  # share of products with interactions that picks the penalty
    seed: int = 0


def build_spec(catalog: pl.DataFrame, warm: np.ndarray, cfg: ContentConfig) -> ContentSpec:
    """The feature vocabulary and numeric statistics, from the ``warm`` rows of ``catalog``."""
    columns = tuple(attribute_columns(catalog))
    warm_rows = np.flatnonzero(warm).astype(np.uint32)
    tokens = token_table(catalog, columns).filter(pl.col("row").is_in(warm_rows))
    counts = (
        tokens.group_by("token")
        .agg(pl.col("row").n_unique().alias("n"))
        .filter(pl.col("n") >= cfg.min_count)
        .sort(["n", "token"], descending=[True, False])
    )
    vocabulary: list[str] = counts["token"].to_list()
    n = len(columns)
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    edges = np.full((n, max(cfg.bins - 1, 1)), np.nan)
    numeric: list[str] = []
    for i, c in enumerate(columns):
        if c.kind != "numeric":
            continue
        x = numeric_values(catalog, c.name)[warm]
        x = x[~np.isnan(x)]
        if len(x) < cfg.min_count:
            continue
        mean[i] = float(x.mean())
        std[i] = float(x.std()) or 1.0
        cuts = np.unique(np.quantile(x, np.arange(1, cfg.bins) / cfg.bins))
        edges[i, : len(cuts)] = cuts
        numeric += [c.name, f"{c.name}?"] + [f"{c.name}#{b}" for b in range(len(cuts) + 1)]
    room = max(cfg.max_features - len(numeric), 0)
    return ContentSpec(
        columns=columns,
        vocabulary=tuple(numeric + vocabulary[:room]),
        numeric_mean=mean,
        numeric_std=std,
        numeric_edges=edges,
    )


def _solve(x: csr_matrix, y: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge with an unpenalized intercept: (weights, bias)."""
    bias = y.mean(axis=0)
    gram = np.asarray((x.T @ x).todense(), dtype=np.float64)
    # Centre the features too, so the intercept is exactly the mean item vector's share.
    mu = np.asarray(x.mean(axis=0)).ravel()
    gram -= x.shape[0] * np.outer(mu, mu)
    gram[np.diag_indices_from(gram)] += penalty
    rhs = np.asarray(x.T @ (y - bias), dtype=np.float64)
    weights = np.linalg.solve(gram, rhs)
    return weights.astype(np.float32), (bias - mu @ weights).astype(np.float32)


def _r2(x: csr_matrix, y: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> float:
    pred = np.asarray(x @ weights) + bias
    total = float(((y - y.mean(axis=0)) ** 2).sum()) or 1.0
    return 1.0 - float(((y - pred) ** 2).sum()) / total


def fit_content(
    catalog: pl.DataFrame, item_factors: np.ndarray, warm: np.ndarray, cfg: ContentConfig
) -> tuple[ContentModel, dict[str, Any]]:
    """Fit on the ``warm`` rows; returns the model and what to record in the manifest."""
    spec = build_spec(catalog, warm, cfg)
    x_all = featurize(catalog, spec)
    rows = np.flatnonzero(warm)
    x, y = x_all[rows], np.asarray(item_factors[rows], dtype=np.float64)
    rng = np.random.default_rng(cfg.seed)
    held = rng.random(len(rows)) < cfg.holdout
    scores: dict[str, float] = {}
    if spec.n_features and held.sum() >= 2 and (~held).sum() >= 2:
        for penalty in cfg.regularization:
            w, b = _solve(x[~held], y[~held], penalty)
            scores[f"{penalty:g}"] = round(_r2(x[held], y[held], w, b), 4)
        best = max(cfg.regularization, key=lambda p: scores[f"{p:g}"])
    else:
        best = cfg.regularization[len(cfg.regularization) // 2]
    if spec.n_features and len(rows):
        weights, bias = _solve(x, y, best)
    else:  # nothing to learn from: every product gets the mean vector
        weights = np.zeros((spec.n_features, item_factors.shape[1]), dtype=np.float32)
        bias = (y.mean(axis=0) if len(rows) else np.zeros(item_factors.shape[1])).astype(np.float32)
    info = {
        "features": spec.n_features,
        "columns": {c.name: c.kind for c in spec.columns},
        "fitted_on": len(rows),
        "regularization": best,
        "holdout_r2": scores,
    }
    return ContentModel(spec, weights, bias), info


def with_content_vectors(
    catalog: pl.DataFrame, item_factors: np.ndarray, warm: np.ndarray, model: ContentModel
) -> np.ndarray:
    """``item_factors`` with the rows of products without interactions predicted."""
    cold = np.flatnonzero(~warm)
    out = np.array(item_factors, dtype=np.float32, copy=True)
    if len(cold):
        out[cold] = model.predict(catalog[cold.tolist()])
    return out


def bundle_content(
    catalog: pl.DataFrame,
    item_factors: np.ndarray,
    matrix: csr_matrix,
    item: np.ndarray,
    ts: np.ndarray,
    cfg: ContentConfig,
) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """What a bundle gets: item vectors with those of products without interactions
    predicted, its extras (``content``: the model; ``catalog``: ``first_seen_ms``, each
    product's first interaction, 0 for none) and the manifest's ``content`` entry."""
    warm = np.bincount(matrix.indices, minlength=catalog.height) > 0
    model, info = fit_content(catalog, item_factors, warm, cfg)
    vectors = with_content_vectors(catalog, item_factors, warm, model)
    first = np.zeros(catalog.height, dtype=np.int64)
    if len(item):
        order = np.lexsort((ts, item))
        starts = np.flatnonzero(np.r_[True, item[order][1:] != item[order][:-1]])
        first[item[order][starts]] = ts[order][starts].astype(np.int64) * 1000
    info["products_with_content_vectors"] = int((~warm).sum())
    extras = {"content": model.to_arrays(), "catalog": {"first_seen_ms": first}}
    return vectors, extras, info

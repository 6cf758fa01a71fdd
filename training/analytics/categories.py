"""Top categories per customer: by purchases, and from the model's vectors."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import polars as pl

from training.analytics.summaries import until, with_defaults

TOP_CATEGORIES = 3  # also the length of the lists training.features puts into profiles


def top_categories(
    interactions: pl.DataFrame,
    catalog: pl.DataFrame,
    as_of: date | datetime | None = None,
) -> pl.DataFrame:
    """customer_id, top_categories: up to 3 categories by number of purchase events, ties by
    name; products missing from the catalog are ignored. The feature store's profiles use it too
    (training.features.customer_features); here it can be cut at ``as_of``."""
    frame = with_defaults(interactions).filter(pl.col("event_type") == "purchase")
    if as_of is not None:
        frame = frame.filter(until(as_of))
    return (
        frame.join(catalog.select("product_id", "category"), on="product_id", how="inner")
        .group_by("customer_id", "category")
        .agg(pl.len().alias("n"))
        .sort(["customer_id", "n", "category"], descending=[False, True, False])
        .group_by("customer_id", maintain_order=True)
        .agg(pl.col("category").head(TOP_CATEGORIES).alias("top_categories"))
    )


def vector_top_categories(
    customer_ids: list[str],
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    item_categories: list[str],
    n: int = TOP_CATEGORIES,
    chunk: int = 100_000,
) -> pl.DataFrame:
    """Top categories from the model: each category's mean item vector scored against the
    customer's vector (customer_id, top_categories_model). Unlike purchase counts this covers
    customers who only browsed, and reflects taste rather than habit."""
    names = sorted(set(item_categories))
    code = {name: i for i, name in enumerate(names)}
    codes = np.array([code[c] for c in item_categories], dtype=np.int64)
    sums = np.zeros((len(names), item_factors.shape[1]), dtype=np.float64)
    np.add.at(sums, codes, item_factors)
    centroids = (sums / np.bincount(codes, minlength=len(names))[:, None]).astype(np.float32)
    top: list[list[str]] = []
    k = min(n, len(names))
    for start in range(0, len(customer_ids), chunk):
        scores = user_factors[start : start + chunk] @ centroids.T
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        zero = ~np.any(user_factors[start : start + chunk], axis=1)
        top.extend([] if z else [names[j] for j in row] for row, z in zip(best, zero, strict=True))
    return pl.DataFrame(
        {"customer_id": customer_ids, "top_categories_model": top},
        schema={"customer_id": pl.Utf8, "top_categories_model": pl.List(pl.Utf8)},
    )

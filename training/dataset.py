"""Validated frames to integer-indexed interaction arrays and the weighted user x item matrix."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import polars as pl
from implicit.nearest_neighbours import bm25_weight
from scipy.sparse import coo_matrix, csr_matrix

from training.schema import EVENT_TYPES

Confidence = Literal["binary", "log", "bm25"]
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "purchase": 1.0,
    "add_to_cart": 0.5,
    "click": 0.25,
    "view": 0.1,
}


@dataclass(frozen=True)
class Dataset:
    """Interactions as parallel arrays over fixed customer and product index spaces.

    Product indexes follow the catalog's row order; customer indexes follow first appearance.
    Subsets (train/test splits) share the id spaces of the dataset they came from.
    """

    customer_ids: pl.Series
    catalog: pl.DataFrame  # product_id, title, category, price, in_stock, extra attributes
    user: np.ndarray  # int32
    item: np.ndarray  # int32
    ts: np.ndarray  # int64, Unix seconds
    event: np.ndarray  # int8, index into EVENT_TYPES
    quantity: np.ndarray  # float32

    @property
    def n_users(self) -> int:
        return len(self.customer_ids)

    @property
    def n_items(self) -> int:
        return self.catalog.height

    @property
    def n_rows(self) -> int:
        return len(self.user)

    @property
    def product_ids(self) -> pl.Series:
        return self.catalog["product_id"]

    def subset(self, mask: np.ndarray) -> Dataset:
        return replace(
            self,
            user=self.user[mask],
            item=self.item[mask],
            ts=self.ts[mask],
            event=self.event[mask],
            quantity=self.quantity[mask],
        )


def catalog_from_interactions(interactions: pl.DataFrame) -> pl.DataFrame:
    """A minimal catalog when none is given: every product seen, uncategorized."""
    ids = interactions["product_id"].unique(maintain_order=True)
    return pl.DataFrame(
        {
            "product_id": ids,
            "title": ids,
            "category": ["uncategorized"] * len(ids),
            "price": pl.Series([None] * len(ids), dtype=pl.Float64),
            "in_stock": [True] * len(ids),
        }
    )


def build_dataset(interactions: pl.DataFrame, catalog: pl.DataFrame) -> tuple[Dataset, int]:
    """Encode ids; returns the dataset and how many rows named a product not in the catalog."""
    item_index = catalog.select(
        pl.col("product_id"), pl.int_range(pl.len(), dtype=pl.Int32).alias("i")
    )
    customers = interactions["customer_id"].unique(maintain_order=True)
    user_index = pl.DataFrame({"customer_id": customers}).with_row_index("u")
    joined = interactions.select(
        "customer_id", "product_id", "timestamp", "event_type", "quantity"
    ).join(item_index, on="product_id", how="left")
    unknown = joined["i"].null_count()
    joined = joined.filter(pl.col("i").is_not_null()).join(user_index, on="customer_id", how="left")
    event_codes = pl.DataFrame(
        {"event_type": list(EVENT_TYPES), "e": pl.Series(range(len(EVENT_TYPES)), dtype=pl.Int8)}
    )
    joined = joined.join(event_codes, on="event_type", how="left")
    ds = Dataset(
        customer_ids=customers,
        catalog=catalog,
        user=joined["u"].cast(pl.Int32).to_numpy(),
        item=joined["i"].to_numpy(),
        ts=joined["timestamp"].dt.epoch("s").to_numpy(),
        event=joined["e"].to_numpy(),
        quantity=joined["quantity"].fill_null(1.0).cast(pl.Float32).to_numpy(),
    )
    return ds, unknown


@dataclass(frozen=True)
class WeightConfig:
    """How interactions become the confidence matrix ALS learns from."""

    event_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    half_life_days: float | None = None  # recency decay; None = no decay
    confidence: Confidence = "log"
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    # Confidence x (n_u / mean n_u)^-user_exponent x (n_i / mean n_i)^-item_exponent, where n
    # counts distinct products per customer and customers per product. Damping heavy customers
    # stands in for iALS's frequency-scaled regularization, which implicit cannot express; on
    # MovieLens-100k it lifts ALS from 0.438 to 0.449 ndcg@20 (BENCHMARKS.md).
    user_exponent: float = 0.5
    item_exponent: float = 0.3

    def to_dict(self) -> dict[str, object]:
        return {
            "event_weights": self.event_weights,
            "half_life_days": self.half_life_days,
            "confidence": self.confidence,
            "bm25_k1": self.bm25_k1,
            "bm25_b": self.bm25_b,
            "user_exponent": self.user_exponent,
            "item_exponent": self.item_exponent,
        }


def raw_weights(ds: Dataset, cfg: WeightConfig, now: int | None = None) -> np.ndarray:
    """Per-row weight: event weight x quantity x recency decay."""
    per_event = np.array([cfg.event_weights.get(e, 0.0) for e in EVENT_TYPES], dtype=np.float32)
    w: np.ndarray = per_event[ds.event] * np.maximum(ds.quantity, 1.0)
    if cfg.half_life_days and ds.n_rows:
        ref = int(ds.ts.max()) if now is None else now
        age_days = (ref - ds.ts).astype(np.float32) / 86400.0
        w *= np.exp2(-age_days / np.float32(cfg.half_life_days))
    return np.asarray(w, dtype=np.float32)


def user_item_matrix(ds: Dataset, cfg: WeightConfig, now: int | None = None) -> csr_matrix:
    """Sum weights per (customer, product) and apply the confidence transform."""
    w = raw_weights(ds, cfg, now)
    keep = w > 0
    m = coo_matrix(
        (w[keep], (ds.user[keep], ds.item[keep])), shape=(ds.n_users, ds.n_items), dtype=np.float32
    ).tocsr()
    m.sum_duplicates()
    return apply_confidence(m, cfg)


def confidence_values(summed: np.ndarray, confidence: Confidence) -> np.ndarray:
    """The per-entry confidence transform of summed weights (bm25 needs the whole matrix)."""
    if confidence == "binary":
        return np.ones_like(summed, dtype=np.float32)
    if confidence == "log":
        logged: np.ndarray = np.log1p(summed).astype(np.float32)
        return logged
    raise ValueError(f"confidence {confidence!r} is not a per-entry transform")


def apply_confidence(m: csr_matrix, cfg: WeightConfig) -> csr_matrix:
    m = m.copy()
    if cfg.confidence in ("binary", "log"):
        m.data = confidence_values(m.data, cfg.confidence)
    elif cfg.confidence == "bm25":
        m = bm25_weight(m, K1=cfg.bm25_k1, B=cfg.bm25_b).tocsr().astype(np.float32)
    else:
        raise ValueError(f"unknown confidence transform {cfg.confidence!r}")
    m = csr_matrix(m)
    if cfg.user_exponent or cfg.item_exponent:
        m.data *= count_weights(np.diff(m.indptr), cfg.user_exponent)[row_of_entries(m)]
        m.data *= count_weights(np.bincount(m.indices, minlength=m.shape[1]), cfg.item_exponent)[
            m.indices
        ]
    return m


def count_weights(counts: np.ndarray, exponent: float) -> np.ndarray:
    """(count / mean count) ^ -exponent, over the rows or columns that have any entry."""
    present = counts > 0
    mean = counts[present].mean() if present.any() else 1.0
    return np.asarray((np.maximum(counts, 1) / mean) ** -exponent, dtype=np.float32)


def row_of_entries(m: csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))


def binary_matrix(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> csr_matrix:
    """1 where a customer interacted with a product (used for seen-filtering and test targets)."""
    m = coo_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=shape).tocsr()
    m.sum_duplicates()
    m.data[:] = 1.0
    return csr_matrix(m)

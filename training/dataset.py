"""Validated frames to integer-indexed interaction arrays and the weighted user x item matrix."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl
from implicit.nearest_neighbours import bm25_weight
from scipy.sparse import coo_matrix, csr_matrix

from formats.events import INTERACTION_TYPES
from formats.history import query_matrix
from formats.weights import WeightConfig, confidence_values, count_weights, sequence_factor


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
    event: np.ndarray  # int8, index into INTERACTION_TYPES
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
    # Rows keep the file's order (splits and `recsvc data split` rely on it).
    joined = interactions.select(
        "customer_id", "product_id", "timestamp", "event_type", "quantity"
    ).join(item_index, on="product_id", how="left", maintain_order="left")
    unknown = joined["i"].null_count()
    joined = joined.filter(pl.col("i").is_not_null()).join(
        user_index, on="customer_id", how="left", maintain_order="left"
    )
    event_codes = pl.DataFrame(
        {
            "event_type": list(INTERACTION_TYPES),
            "e": pl.Series(range(len(INTERACTION_TYPES)), dtype=pl.Int8),
        }
    )
    joined = joined.join(event_codes, on="event_type", how="left", maintain_order="left")
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


def raw_weights(ds: Dataset, cfg: WeightConfig, now: int | None = None) -> np.ndarray:
    """Per-row weight: event weight x quantity x recency decay."""
    per_event = np.array(
        [cfg.event_weights.get(e, 0.0) for e in INTERACTION_TYPES], dtype=np.float32
    )
    w: np.ndarray = per_event[ds.event] * np.maximum(ds.quantity, 1.0)
    if cfg.half_life_days and ds.n_rows:
        ref = int(ds.ts.max()) if now is None else now
        age_days = (ref - ds.ts).astype(np.float32) / 86400.0
        w *= np.exp2(-age_days / np.float32(cfg.half_life_days))
    return np.asarray(w, dtype=np.float32)


def customer_time_order(user: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Row order sorted by customer, then timestamp (ties keep file order)."""
    if len(user) == 0:
        return np.zeros(0, dtype=np.int64)
    # One int64 key sorts ~2.5x faster than np.lexsort over two columns at 20M rows.
    key = (user.astype(np.int64) << 32) | (ts - ts.min()).astype(np.int64)
    return np.argsort(key, kind="stable")


@dataclass(frozen=True)
class Summary:
    """Per (customer, product): the summed raw weight and the position (0-based, among the
    customer's weighted events in time order) of the latest event; per customer: how many
    weighted events. What the confidence matrix is computed from, and, stored as the bundle's
    ``sequence`` extra (formats.history), what serving reads a customer's history from."""

    raw: csr_matrix  # canonical CSR, float32
    rank: np.ndarray  # int32, one per entry of raw
    events: np.ndarray  # int32, one per customer

    def extra(self) -> dict[str, np.ndarray]:
        return {
            "raw": self.raw.data.astype(np.float32),
            "rank": self.rank.astype(np.int32),
            "events": self.events.astype(np.int32),
        }

    def query(self, cfg: WeightConfig, decay: float, recent: int) -> csr_matrix:
        """Item-to-item queries (formats.history.query_matrix) of every customer."""
        return query_matrix(self.raw, self.rank, self.events, decay, recent, cfg.confidence)


def summarize(ds: Dataset, cfg: WeightConfig, now: int | None = None) -> Summary:
    w = raw_weights(ds, cfg, now)
    keep = w > 0
    user, item, w = ds.user[keep], ds.item[keep], w[keep]
    order = customer_time_order(user, ds.ts[keep])
    user, item, w = user[order], item[order], w[order]
    events = np.bincount(user, minlength=ds.n_users)
    starts = np.concatenate(([0], np.cumsum(events)[:-1]))
    rank = np.arange(len(user)) - starts[user]
    # Ranks grow along the order, so a pair's latest event is its last row: the first one
    # np.unique meets when reading the rows backwards.
    key = (user.astype(np.int64) * ds.n_items + item)[::-1]
    pairs, latest, inverse = np.unique(key, return_index=True, return_inverse=True)
    sums = np.bincount(inverse, weights=w[::-1], minlength=len(pairs))
    pair_user = pairs // max(ds.n_items, 1)
    indptr = np.concatenate(([0], np.cumsum(np.bincount(pair_user, minlength=ds.n_users))))
    raw = csr_matrix(
        (sums.astype(np.float32), (pairs % max(ds.n_items, 1)).astype(np.int32), indptr),
        shape=(ds.n_users, ds.n_items),
    )
    return Summary(raw=raw, rank=rank[::-1][latest].astype(np.int32), events=events)


def user_item_matrix(ds: Dataset, cfg: WeightConfig, now: int | None = None) -> csr_matrix:
    """Sum weights per (customer, product) and apply the confidence transform."""
    return confidence_matrix(summarize(ds, cfg, now), cfg)


def confidence_matrix(summary: Summary, cfg: WeightConfig) -> csr_matrix:
    """The confidence transform, count damping and sequence decay of a summary."""
    m = apply_confidence(summary.raw, cfg)
    if cfg.sequence_decay:
        same = np.array_equal(m.indptr, summary.raw.indptr) and np.array_equal(
            m.indices, summary.raw.indices
        )
        if not same:  # the transforms keep every entry in place; check, it is cheap
            raise ValueError("the confidence transform reordered the matrix entries")
        m.data *= sequence_factor(
            summary.rank, summary.events[row_of_entries(m)], cfg.sequence_decay
        )
    return m


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


def row_of_entries(m: csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))


def binary_matrix(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> csr_matrix:
    """1 where a customer interacted with a product (used for seen-filtering and test targets)."""
    m = coo_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=shape).tocsr()
    m.sum_duplicates()
    m.data[:] = 1.0
    return csr_matrix(m)

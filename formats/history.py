"""A customer's history per product, as training summarized it and serving extends it.

Beside the confidence matrix (``interactions.npz``) training writes the bundle extra
``sequence`` (docs/bundle-format.md):

- ``raw``: float32 per entry of the matrix, the summed raw weights (event weight x quantity x
  calendar decay) before the confidence transform;
- ``rank``: int32 per entry, the position (0-based) of the customer's latest weighted event
  with the product among all their weighted events;
- ``events``: int32 per customer, how many weighted events their history has.

Fold-in, item-to-item scoring and "because you liked X" read a customer's row of these and
append the events since training (:meth:`History.add`), so all three weight a history the way
training did, sequence decay included. A bundle without the extra (older recsvc) gives
histories whose order is unknown (every rank 0) and whose raw weights are unknown (``exact``
false): such bundles have no sequence decay, so nothing that matters is lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from formats.bundle import BundleError
from formats.weights import (
    Confidence,
    WeightConfig,
    confidence_values,
    count_weights,
    sequence_factor,
)

SEQUENCE = "sequence"  # the bundle extra's name
NewEvents = list[tuple[int, float]]  # (product index, raw weight > 0), oldest first


@dataclass(frozen=True)
class History:
    """One customer's products, each once, with what training and later events say of it."""

    items: np.ndarray  # int64 product indexes, unique
    raw: np.ndarray  # float64 summed raw weights (trained confidence when not ``exact``)
    rank: np.ndarray  # int64 position of the latest event with the product
    events: int  # weighted events in the whole history
    trained_conf: np.ndarray  # float32 confidence in the trained matrix (0: not trained)
    trained_rank: np.ndarray  # int64 rank as trained (0 for products not trained)
    trained_events: int
    new_raw: np.ndarray  # float64 raw weight of the events added since training
    exact: bool  # raw weights are known (the bundle has the sequence extra)

    @property
    def trained_items(self) -> int:
        return int(np.count_nonzero(self.trained_conf))

    def add(self, new: NewEvents) -> History:
        """This history with ``new`` events, (product index, raw weight > 0), oldest first."""
        if not new:
            return self
        idx = np.fromiter((i for i, _ in new), dtype=np.int64, count=len(new))
        w = np.fromiter((x for _, x in new), dtype=np.float64, count=len(new))
        ranks = self.events + np.arange(len(new), dtype=np.int64)
        n_old = len(self.items)
        items, inv = np.unique(np.concatenate([self.items, idx]), return_inverse=True)
        rank = np.zeros(len(items), dtype=np.int64)
        np.maximum.at(rank, inv, np.concatenate([self.rank, ranks]))
        trained_conf = np.zeros(len(items), dtype=np.float32)
        trained_conf[inv[:n_old]] = self.trained_conf
        trained_rank = np.zeros(len(items), dtype=np.int64)
        trained_rank[inv[:n_old]] = self.trained_rank
        new_raw = np.zeros(len(items))
        new_raw[inv[:n_old]] = self.new_raw
        return History(
            items=items,
            raw=np.bincount(inv, weights=np.concatenate([self.raw, w]), minlength=len(items)),
            rank=rank,
            events=self.events + len(new),
            trained_conf=trained_conf,
            trained_rank=trained_rank,
            trained_events=self.trained_events,
            new_raw=new_raw + np.bincount(inv[n_old:], weights=w, minlength=len(items)),
            exact=self.exact,
        )

    def oldest_first(self) -> np.ndarray:
        """Product indexes ordered by their latest event, the most recent last."""
        return self.items[np.argsort(self.rank, kind="stable")]

    def query_weights(
        self, decay: float, recent: int, confidence: Confidence
    ) -> tuple[np.ndarray, np.ndarray]:
        """(products in index order, weights): this customer's row of :func:`query_matrix`,
        the same numbers computed without building a matrix (the serving path)."""
        order = np.argsort(self.items, kind="stable")
        items, rank = self.items[order], self.rank[order]
        transform: Confidence = "log" if confidence == "bm25" else confidence
        values = confidence_values(self.raw[order].astype(np.float32), transform)
        values = values * sequence_factor(rank, np.full(len(rank), self.events), decay)
        if 0 < recent < len(items):
            keep = np.zeros(len(items), dtype=bool)
            keep[np.argsort(-rank, kind="stable")[:recent]] = True  # ties: in index order
            values = np.where(keep, values, 0.0).astype(np.float32)
        nonzero = values != 0
        return items[nonzero], values[nonzero]

    def query(self, n_items: int, decay: float, recent: int, confidence: Confidence) -> csr_matrix:
        """This customer's item-to-item query as a 1 x n_items row."""
        items, weights = self.query_weights(decay, recent, confidence)
        return csr_matrix((weights, items, np.array([0, len(items)])), shape=(1, n_items))


def new_events(
    events: Iterable[tuple[int, str, float, int]], weights: WeightConfig, cutoff_ms: int
) -> NewEvents:
    """(product index, raw weight) of the (product index, type, quantity, ts_ms) events newer
    than the training data (``cutoff_ms``) that have a weight, oldest first; ``events`` come
    newest first, as the feature store keeps them. Types are training's event types
    (formats.events.INTEREST maps to them)."""
    new: NewEvents = []
    for idx, kind, quantity, ts_ms in events:
        if ts_ms <= cutoff_ms:
            continue
        weight = weights.event_weights.get(kind, 0.0)
        if weight > 0:
            new.append((idx, weight * max(quantity, 1.0)))
    new.reverse()
    return new


class Histories:
    """Every trained customer's history: the bundle's matrix and its ``sequence`` extra."""

    def __init__(self, user_items: csr_matrix, sequence: Mapping[str, np.ndarray] | None) -> None:
        self.user_items = user_items
        self.exact = sequence is not None
        if sequence is not None:
            raw, rank, events = (np.asarray(sequence[k]) for k in ("raw", "rank", "events"))
            if len(raw) != user_items.nnz or len(rank) != user_items.nnz:
                raise BundleError(
                    f"the {SEQUENCE} extra has {len(raw)} raw weights and {len(rank)} ranks for "
                    f"{user_items.nnz} matrix entries"
                )
            if len(events) != user_items.shape[0]:
                raise BundleError(
                    f"the {SEQUENCE} extra counts events of {len(events)} customers, the matrix "
                    f"has {user_items.shape[0]}"
                )
            self.raw, self.rank, self.events = raw, rank, events
        else:
            self.raw = user_items.data
            self.rank = np.zeros(user_items.nnz, dtype=np.int32)
            self.events = np.diff(user_items.indptr)

    def of(self, user: int | None) -> History:
        if user is None:
            return empty_history(self.exact)
        m = self.user_items
        lo, hi = int(m.indptr[user]), int(m.indptr[user + 1])
        rank = self.rank[lo:hi].astype(np.int64)
        events = int(self.events[user])
        return History(
            items=m.indices[lo:hi].astype(np.int64),
            raw=self.raw[lo:hi].astype(np.float64),
            rank=rank,
            events=events,
            trained_conf=np.asarray(m.data[lo:hi], dtype=np.float32),
            trained_rank=rank,
            trained_events=events,
            new_raw=np.zeros(hi - lo),
            exact=self.exact,
        )


def row_entries(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions in a CSR matrix's data/indices arrays of every entry of ``rows``, in row
    order; each row's entry count). Gathered without scipy: its checks cost more than this on
    the serving path."""
    lo, hi = indptr[rows], indptr[rows + 1]
    counts = (hi - lo).astype(np.int64)
    entries = np.repeat(lo - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    entries += np.arange(int(counts.sum()))
    return entries, counts


def empty_history(exact: bool = True) -> History:
    none = np.zeros(0, dtype=np.int64)
    return History(
        items=none,
        raw=np.zeros(0),
        rank=none,
        events=0,
        trained_conf=np.zeros(0, dtype=np.float32),
        trained_rank=none,
        trained_events=0,
        new_raw=np.zeros(0),
        exact=exact,
    )


def query_matrix(
    raw: csr_matrix,
    rank: np.ndarray,
    events: np.ndarray,
    decay: float,
    recent: int,
    confidence: Confidence,
) -> csr_matrix:
    """Item-to-item queries: per customer (row of ``raw``, canonical CSR with ``rank`` per
    entry and ``events`` per row), the confidence of their ``recent`` most recent products
    (0 = all) times the sequence factor exp(decay * (r - 1)). Training evaluates and serving
    answers with this one function, so both score a customer alike."""
    rows = np.repeat(np.arange(raw.shape[0]), np.diff(raw.indptr))
    transform: Confidence = "log" if confidence == "bm25" else confidence
    values = confidence_values(raw.data.astype(np.float32), transform) * sequence_factor(
        rank, np.asarray(events)[rows], decay
    )
    if recent > 0:
        newest_first = np.lexsort((-np.asarray(rank, dtype=np.int64), rows))
        position = np.arange(len(rows)) - raw.indptr[rows[newest_first]]
        keep = np.zeros(len(rows), dtype=bool)
        keep[newest_first[position < recent]] = True
        values = np.where(keep, values, 0.0).astype(np.float32)
    query = csr_matrix((values, raw.indices.copy(), raw.indptr.copy()), shape=raw.shape)
    query.eliminate_zeros()
    return query


def item_weights(user_items: csr_matrix, weights: WeightConfig) -> tuple[np.ndarray, float]:
    """(per-product count damping, mean products per customer) of a trained matrix: what
    :func:`history_confidence` needs besides the history."""
    item_weight = count_weights(
        np.bincount(user_items.indices, minlength=user_items.shape[1]), weights.item_exponent
    )
    per_user = np.diff(user_items.indptr)
    mean_user = float(per_user[per_user > 0].mean()) if per_user.any() else 1.0
    return item_weight, mean_user


def history_confidence(
    history: History, weights: WeightConfig, item_weight: np.ndarray, mean_user: float
) -> np.ndarray:
    """The ALS confidence of each product of ``history``, as training would compute it:
    exact when the raw weights are known and the transform is per entry; for bm25 (which
    needs the whole matrix) and bundles without raw weights, trained entries keep their
    trained confidence, rescaled for the new positions and product count, and new raw weight
    adds with the log transform."""

    def user_weight(n_items: int) -> float:
        return float((max(n_items, 1) / mean_user) ** -weights.user_exponent)

    n = len(history.items)
    iw = item_weight[history.items]
    if history.exact and weights.confidence != "bm25":
        base = confidence_values(history.raw.astype(np.float32), weights.confidence) * iw
    else:
        trained = sequence_factor(
            history.trained_rank, np.full(n, history.trained_events), weights.sequence_decay
        )
        kept = history.trained_conf / (trained * user_weight(history.trained_items))
        added = np.where(
            history.new_raw > 0, confidence_values(history.new_raw.astype(np.float32), "log"), 0.0
        )
        base = kept + added * iw
    factor = sequence_factor(history.rank, np.full(n, history.events), weights.sequence_decay)
    conf: np.ndarray = (base * factor * user_weight(n)).astype(np.float32)
    return conf

"""Top-k ranking metrics over a full ranking of the catalog, already-seen products excluded."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.sparse import csr_matrix

Scorer = Callable[[np.ndarray], np.ndarray]  # customer indexes -> (n, n_items) scores
METRICS = ("ndcg", "recall", "map", "hitrate", "coverage")
_BATCH_CELLS = 1 << 24  # scores held at once (64 MB of float32)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indexes of the k best scores per row, best first (k clipped to the row length)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def mask_seen(scores: np.ndarray, seen: csr_matrix, users: np.ndarray) -> None:
    rows = seen[users]
    r, c = rows.nonzero()
    scores[r, c] = -np.inf


def recommend_batch(scorer: Scorer, seen: csr_matrix, users: np.ndarray, k: int) -> np.ndarray:
    """Top-k unseen products per customer, best first; -1 pads a row when fewer than k
    products are left unseen."""
    scores = scorer(users).astype(np.float32, copy=False)
    mask_seen(scores, seen, users)
    top = top_k(scores, k)
    top[np.take_along_axis(scores, top, axis=1) == -np.inf] = -1
    return top


def evaluate(
    scorer: Scorer,
    seen: csr_matrix,
    targets: csr_matrix,
    k: int = 20,
    users: np.ndarray | None = None,
) -> dict[str, float]:
    """Mean NDCG, recall, MAP and hit rate at k over ``users`` (default: all with targets),
    and catalog coverage (share of products recommended to anyone)."""
    has_targets = np.diff(targets.indptr) > 0
    users = np.flatnonzero(has_targets) if users is None else users[has_targets[users]]
    n_items = targets.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)
    sums = dict.fromkeys(("ndcg", "recall", "map", "hitrate"), 0.0)
    recommended = np.zeros(n_items, dtype=bool)
    batch = max(1, _BATCH_CELLS // max(n_items, 1))
    chunks = [users[start : start + batch] for start in range(0, len(users), batch)]
    # Scoring and argpartition release the GIL: one batch per core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        tops = pool.map(lambda chunk: recommend_batch(scorer, seen, chunk, k), chunks)
        for chunk, top in zip(chunks, tops, strict=True):
            recommended[top[top >= 0]] = True
            rows = np.repeat(np.arange(len(chunk)), top.shape[1])
            hits = np.asarray(targets[chunk][rows, np.maximum(top, 0).ravel()]).reshape(top.shape)
            hits = (hits > 0) & (top >= 0)
            n_rel = np.minimum(np.diff(targets.indptr)[chunk], top.shape[1])
            n_hits = hits.sum(axis=1)
            sums["ndcg"] += float(((hits @ discounts[: top.shape[1]]) / ideal[n_rel - 1]).sum())
            sums["recall"] += float((n_hits / n_rel).sum())
            precision_at = np.cumsum(hits, axis=1) / np.arange(1, top.shape[1] + 1)
            sums["map"] += float(((precision_at * hits).sum(axis=1) / n_rel).sum())
            sums["hitrate"] += float((n_hits > 0).sum())
    n = max(len(users), 1)
    result = {f"{name}@{k}": value / n for name, value in sums.items()}
    result[f"coverage@{k}"] = float(recommended.mean()) if n_items else 0.0
    return result

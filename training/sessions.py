"""Histories in time order, and the anonymous-session evaluation.

A session is the last ``length`` distinct products of a customer's training history, seen
as a visitor without an account would be: no customer vector, no trained row. Each servable
model recommends from it as the engine would (ALS by folding the session in, item-to-item
from the session's query, item2vec from the mean of its vectors), and the customer's
held-out products are the targets.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from formats.history import History, empty_history, history_confidence, item_weights
from formats.weights import WeightConfig
from training.dataset import Dataset, binary_matrix
from training.item2item import Item2ItemModel
from training.item2vec import Item2VecModel
from training.metrics import Scorer, evaluate
from training.models import ALSModel
from training.split import Split, by_customer_then_time

SESSION_LENGTH = 5  # products of a session in the evaluation


def sequences(ds: Dataset) -> list[np.ndarray]:
    """Each customer's products in time order, repeats in a row collapsed (a view, click
    and purchase of one product are one step)."""
    order = by_customer_then_time(ds)
    users, items = ds.user[order], ds.item[order].astype(np.int64)
    keep = np.ones(len(items), dtype=bool)
    keep[1:] = (items[1:] != items[:-1]) | (users[1:] != users[:-1])
    users, items = users[keep], items[keep]
    bounds = np.searchsorted(users, np.arange(ds.n_users + 1))
    return [items[bounds[u] : bounds[u + 1]] for u in range(ds.n_users)]


def last_distinct(sequence: np.ndarray, length: int) -> list[int]:
    """The last ``length`` distinct products of a sequence, oldest first."""
    seen: list[int] = []
    for item in reversed(sequence.tolist()):
        if item not in seen:
            seen.append(item)
            if len(seen) == length:
                break
    return seen[::-1]


def session_histories(ds: Dataset, users: np.ndarray, length: int) -> list[History]:
    seqs = sequences(ds)
    return [empty_history().add([(i, 1.0) for i in last_distinct(seqs[u], length)]) for u in users]


def als_session_scorer(
    als: ALSModel, weights: WeightConfig, matrix: csr_matrix, sessions: list[History]
) -> Callable[[np.ndarray], np.ndarray]:
    """Each session folded in as the engine does (formats.history.history_confidence, one
    ALS user solve), then scored against every product."""
    from implicit.cpu.als import AlternatingLeastSquares

    item_weight, mean_user = item_weights(matrix, weights)
    rows, cols, vals = [], [], []
    for r, h in enumerate(sessions):
        conf = history_confidence(h, weights, item_weight, mean_user)
        rows.extend([r] * len(conf))
        cols.extend(h.items.tolist())
        vals.extend(conf.tolist())
    conf_matrix = csr_matrix(
        (np.asarray(vals, dtype=np.float32), (rows, cols)), shape=(len(sessions), matrix.shape[1])
    )
    p = als.params
    with threadpool_limits(1, "blas"):
        solver = AlternatingLeastSquares(
            factors=p.factors, regularization=p.regularization, alpha=p.alpha, random_state=0
        )
        solver.item_factors = als.item_factors
        vectors = np.asarray(
            solver.recalculate_user(np.arange(len(sessions)), conf_matrix), dtype=np.float32
        )
    return lambda idx: vectors[idx] @ als.item_factors.T


def evaluate_sessions(
    split: Split,
    users: np.ndarray,
    k: int,
    weights: WeightConfig,
    matrix: csr_matrix,
    als: ALSModel,
    item2item: Item2ItemModel | None,
    item2vec: Item2VecModel | None,
    length: int = SESSION_LENGTH,
) -> dict[str, dict[str, float]]:
    """ndcg@k and friends of each model recommending from sessions (see the module doc).
    Products of the customer's training history stay masked, as for every other table."""
    sessions = session_histories(split.train, users, length)
    keep = np.array([len(h.items) > 0 for h in sessions], dtype=bool)
    users = users[keep]
    sessions = [h for h, ok in zip(sessions, keep, strict=True) if ok]
    if len(users) == 0:
        return {}
    position = np.full(split.targets.shape[0], -1, dtype=np.int64)
    position[users] = np.arange(len(users))
    n_items = split.targets.shape[1]
    als_scores = als_session_scorer(als, weights, matrix, sessions)
    scorers: dict[str, Scorer] = {"als": lambda u: als_scores(position[u])}
    if item2item is not None:
        p = item2item.params
        query = csr_matrix(
            _stack([h.query(n_items, p.decay, p.recent, weights.confidence) for h in sessions])
        )
        scorers["item2item"] = lambda u: item2item.score(position[u], query)
    if item2vec is not None:
        # The same query weights (recency decay) as the item-to-item model's, or plain.
        decay = item2item.params.decay if item2item is not None else 0.0
        vec_query = csr_matrix(_stack([h.query(n_items, decay, 0, "binary") for h in sessions]))
        scorers["item2vec"] = lambda u: item2vec.score(position[u], vec_query)
    seen = binary_matrix(split.train.user, split.train.item, split.targets.shape)
    return {name: evaluate(s, seen, split.targets, k, users) for name, s in scorers.items()}


def _stack(rows: list[csr_matrix]) -> csr_matrix:
    from scipy.sparse import vstack

    return csr_matrix(vstack(rows, format="csr"))

"""The item-to-item model: a sparse table of each product's neighbours, and a customer's
scores as the recency-weighted sum of their recent products' neighbour rows.

Neighbours come from EASE (Steck 2019, closed form: a ridge regression of every product on
all others) for catalogs up to ``ease_max_items`` products, pruned to the ``neighbours``
largest weights per product, and from cosine similarity (top ``neighbours``) above. The
query side (which products, how much each weighs) is formats.history.query_matrix, the same
function serving calls, so a bundle scores a customer offline as it does online.

Above ``max_items`` products, or ``max_interactions`` interactions, the model is not fitted at
all: ALS alone serves (neighbour tables of that size cannot be built, and the model, its blends
and its session scores cannot be evaluated, in the training budget; see BENCHMARKS.md).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from training.models import Model

Kind = Literal["auto", "ease", "cosine"]


@dataclass(frozen=True)
class Item2ItemParams:
    kind: Kind = "auto"  # auto: EASE up to ease_max_items products, cosine above
    # EASE's ridge penalty as a multiple of the mean product count (the mean diagonal of
    # X'X), so one value fits catalogs of different sizes and densities.
    l2: float = 5.0
    neighbours: int = 200  # kept per product: MovieLens-100k loses 0.4% of ndcg@20 at 200
    decay: float = 4.0  # sequence decay of the query (formats.weights.sequence_factor)
    recent: int = 50  # a query holds at most this many of the customer's latest products
    ease_max_items: int = 5_000
    max_items: int = 200_000
    # On the 1M-customer world (20M interactions, 100k products) it adds 2.3-2.9 minutes (its
    # tuning ~1, its evaluations ~1, its refit) to a 6-minute training on 2 cores, and serves a
    # blend that beats item-kNN where ALS alone loses to it (BENCHMARKS.md); above: not measured.
    max_interactions: int = 25_000_000

    def fits(self, n_items: int, n_interactions: int) -> bool:
        """Whether the model is fitted for a dataset of this size."""
        return n_items <= self.max_items and n_interactions <= self.max_interactions

    def resolved(self, n_items: int) -> Literal["ease", "cosine"]:
        if self.kind != "auto":
            return self.kind
        return "ease" if n_items <= self.ease_max_items else "cosine"

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def ease_neighbours(binary: csr_matrix, l2: float, keep: int) -> csr_matrix:
    """EASE weights B (zero diagonal), each row pruned to its ``keep`` largest |weights|."""
    gram = (binary.T @ binary).toarray().astype(np.float64)
    diagonal = np.diag_indices_from(gram)
    mean_count = float(gram[diagonal].mean()) if gram.size else 1.0
    gram[diagonal] += l2 * max(mean_count, 1e-9)
    # The inverse is the one step that uses every core (BLAS is kept to one thread elsewhere).
    with threadpool_limits(os.cpu_count() or 1, "blas"):
        p = np.linalg.inv(gram)
    weights = -p / np.diag(p)
    weights[diagonal] = 0.0
    return prune(weights, keep)


def prune(dense: np.ndarray, keep: int) -> csr_matrix:
    """Rows of ``dense`` with only their ``keep`` largest |values| (zeros dropped)."""
    n = dense.shape[1]
    if keep < n:
        top = np.argpartition(-np.abs(dense), keep - 1, axis=1)[:, :keep]
    else:
        top = np.tile(np.arange(n), (dense.shape[0], 1))
    rows = np.repeat(np.arange(dense.shape[0]), top.shape[1])
    values = dense[rows, top.ravel()].astype(np.float32)
    m = csr_matrix((values, (rows, top.ravel())), shape=dense.shape)
    m.eliminate_zeros()
    m.sort_indices()
    return m


def cosine_neighbours(binary: csr_matrix, keep: int, progress: bool) -> csr_matrix:
    from implicit.nearest_neighbours import CosineRecommender

    model = CosineRecommender(K=keep + 1)  # + 1: each product is its own nearest
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Method expects CSR input")
        model.fit(binary, show_progress=progress)
    sim = csr_matrix(model.similarity, dtype=np.float32)
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    sim.sort_indices()
    return sim


class Item2ItemModel(Model):
    """Scores = the query rows (``user_items``) times the neighbour table. Products without
    a positive score rank after those with one, by popularity: serving fills the same way."""

    name = "item2item"

    def __init__(self, params: Item2ItemParams | None = None) -> None:
        self.params = params or Item2ItemParams()
        self.neighbours = csr_matrix((0, 0), dtype=np.float32)
        self.popularity = np.zeros(0, dtype=np.float32)

    @property
    def kind(self) -> Literal["ease", "cosine"]:
        return self.params.resolved(self.neighbours.shape[0])

    def fit(self, user_items: csr_matrix, progress: bool = False) -> None:
        binary = csr_matrix(user_items, dtype=np.float32, copy=True)
        binary.data[:] = 1.0
        n = binary.shape[1]
        keep = max(1, min(self.params.neighbours, max(n - 1, 1)))
        if self.params.resolved(n) == "ease":
            self.neighbours = ease_neighbours(binary, self.params.l2, keep)
        else:
            self.neighbours = cosine_neighbours(binary, keep, progress)
        self.popularity = np.bincount(binary.indices, minlength=n).astype(np.float32)

    def fallback(self) -> np.ndarray:
        """-1 + popularity scaled below 1: below every positive score, in popularity order."""
        top = float(self.popularity.max()) if len(self.popularity) else 0.0
        scaled: np.ndarray = (-1.0 + self.popularity / (top + 1.0)).astype(np.float32)
        return scaled

    def raw_scores(self, users: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        scores: np.ndarray = np.asarray(
            (user_items[users] @ self.neighbours).toarray(), dtype=np.float32
        )
        return scores

    def score(self, users: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        raw = self.raw_scores(users, user_items)
        return np.where(raw > 0, raw, self.fallback()[None, :]).astype(np.float32)

    def extra(self) -> dict[str, np.ndarray]:
        """The bundle extra ``item2item`` (docs/bundle-format.md)."""
        n = self.neighbours
        return {
            "indptr": n.indptr.astype(np.int64),
            "indices": n.indices.astype(np.int32),
            "data": n.data.astype(np.float32),
        }

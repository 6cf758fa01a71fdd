"""item2vec: product embeddings learned like word vectors (gensim's skip-gram Word2Vec) from
customers' histories read as sentences, products in the order they were met.

Similar products are the nearest by cosine, and a customer or a session is the recency
weighted mean of their products' unit vectors. Plain cosine ignores how popular a product
is, and loses to ALS for it (MovieLens-100k similar products: ndcg@20 0.098 against 0.192);
a prior of ``popularity_weight`` x log(1 + customers) / log(1 + the most customers) added to
every cosine lifts it to 0.22-0.23 there (BENCHMARKS.md). Evaluated beside ALS and the item-to-item
model on similar products and on anonymous sessions; it serves a task only where it wins
(training/evaluation.py, BENCHMARKS.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.sparse import csr_matrix

from training.index import normalized
from training.models import Model


@dataclass(frozen=True)
class Item2VecParams:
    dimensions: int = 64
    window: int = 5
    epochs: int = 10
    negative: int = 5
    sample: float = 1e-3  # down-sampling of very frequent products
    popularity_weight: float = 1.0  # the popularity prior added to cosine scores
    max_items: int = 100_000  # served by exact cosine over every vector: keep it cheap
    max_tokens: int = 5_000_000  # products in all histories: beyond, training takes minutes
    seed: int = 0
    workers: int = 1  # 1: the same vectors on every run

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def sentences_of(user_items: csr_matrix) -> list[list[int]]:
    """Each customer's products, in product order (a matrix has no time order)."""
    return [
        user_items.indices[user_items.indptr[u] : user_items.indptr[u + 1]].tolist()
        for u in range(user_items.shape[0])
    ]


class Item2VecModel(Model):
    name = "item2vec"

    def __init__(self, params: Item2VecParams | None = None) -> None:
        self.params = params or Item2VecParams()
        self.item_vectors = np.zeros((0, self.params.dimensions), dtype=np.float32)
        self.popularity = np.zeros(0, dtype=np.float32)

    def fit(self, user_items: csr_matrix, progress: bool = False) -> None:
        """Sentences from the matrix rows; the pipeline calls :meth:`fit_sequences` with
        histories in time order instead."""
        self.fit_sequences(sentences_of(user_items), user_items.shape[1], progress)

    def fit_sequences(
        self, sequences: Sequence[Sequence[int] | np.ndarray], n_items: int, progress: bool = False
    ) -> None:
        from gensim.models import Word2Vec

        p = self.params
        sentences = [[str(i) for i in s] for s in sequences if len(s) > 1]
        counts = np.zeros(n_items, dtype=np.float32)
        for s in sequences:
            counts[np.asarray(s, dtype=np.int64)] += 1.0
        self.popularity = counts
        vectors = np.zeros((n_items, p.dimensions), dtype=np.float32)
        if sentences:
            model = Word2Vec(
                sentences,
                vector_size=p.dimensions,
                window=p.window,
                min_count=1,
                sg=1,
                negative=p.negative,
                sample=p.sample,
                epochs=p.epochs,
                seed=p.seed,
                workers=p.workers if p.workers > 0 else (os.cpu_count() or 1),
                compute_loss=False,
            )
            keys = np.array([int(k) for k in model.wv.index_to_key], dtype=np.int64)
            vectors[keys] = model.wv.vectors
        self.item_vectors = normalized(vectors)

    def prior(self) -> np.ndarray:
        """What every score gets added: the popularity prior, and a tie-break by popularity
        (for customers without history and products never met)."""
        top = float(self.popularity.max()) if len(self.popularity) else 0.0
        weight = self.params.popularity_weight
        prior = weight * np.log1p(self.popularity) / np.log1p(top) if top > 0 else self.popularity
        tie_break = 1e-4 * self.popularity / (top + 1.0)
        result: np.ndarray = (prior + tie_break).astype(np.float32)
        return result

    def score(self, users: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        """Cosine of each product to the weighted mean of the customer's product vectors."""
        rows = user_items[users]
        query = np.asarray(rows @ self.item_vectors, dtype=np.float32)
        query = normalized(query) if len(query) else query
        scores: np.ndarray = (query @ self.item_vectors.T + self.prior()[None, :]).astype(
            np.float32
        )
        return scores

    def extra(self) -> dict[str, np.ndarray]:
        """The bundle extra ``item2vec``: unit vectors and the score prior, per product."""
        return {"vectors": self.item_vectors.astype(np.float32), "prior": self.prior()}

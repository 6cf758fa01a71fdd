"""Serving the bundle's item2vec vectors (training/item2vec.py) where evaluation chose them:
similar products (cosine to the product) and sessions of visitors without history (cosine to
the recency-weighted mean of the session's vectors), each plus the popularity prior training
stored. Scoring is exact over every product,
which the trainer allows only for catalogs up to ``Item2VecParams.max_items``."""

from __future__ import annotations

from typing import Any

import numpy as np

from formats.bundle import Bundle, BundleError
from formats.history import History
from formats.types import Filter
from recsvc.engine.catalog import Catalog
from recsvc.engine.retrieval import Chosen, Picked, Retrieval

NAME = "item2vec"


class Item2Vec:
    def __init__(
        self,
        vectors: np.ndarray,
        prior: np.ndarray,
        params: dict[str, Any],
        catalog: Catalog,
        retrieval: Retrieval,
    ) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # unit rows
        self.prior = np.asarray(prior, dtype=np.float32)  # added to every cosine
        self.decay = float(params.get("session_decay", 0.0))
        self.catalog = catalog
        self.retrieval = retrieval

    @classmethod
    def from_bundle(
        cls, bundle: Bundle, serving: dict[str, str], catalog: Catalog, retrieval: Retrieval
    ) -> Item2Vec | None:
        if NAME not in serving.values():
            return None
        arrays = bundle.extras.get(NAME)
        params = bundle.manifest.get("params", {}).get(NAME)
        if (
            arrays is None
            or not {"vectors", "prior"} <= set(arrays)
            or not isinstance(params, dict)
        ):
            raise BundleError(f"{bundle.path}: the manifest serves {NAME} but the bundle has none")
        vectors, prior = arrays["vectors"], arrays["prior"]
        if (
            vectors.ndim != 2
            or vectors.shape[0] != catalog.n_items
            or prior.shape != (catalog.n_items,)
        ):
            raise BundleError(
                f"{bundle.path}: {NAME} holds {vectors.shape[0]} vectors and {prior.shape} "
                f"priors for {catalog.n_items} products"
            )
        return cls(vectors, prior, params, catalog, retrieval)

    def _best(self, scores: np.ndarray, limit: int, filter: Filter, excluded: set[int]) -> Picked:
        n = min(len(scores), limit * 4 + len(excluded))
        while True:
            head = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(n)
            head = head[np.argsort(-scores[head], kind="stable")]
            picked = self.retrieval.take(head, scores[head], limit, filter, excluded)
            if len(picked) >= limit or n >= len(scores):
                return picked
            n = min(len(scores), n * 4)

    def similar(self, idx: int, limit: int, filter: Filter, excluded: set[int]) -> Picked:
        scores = self.vectors @ self.vectors[idx] + self.prior
        return self._best(scores, limit, filter, excluded)

    def recommend(self, history: History, limit: int, filter: Filter, excluded: set[int]) -> Chosen:
        """From the recency-weighted mean of the history's vectors, with reasons."""
        query = history.query(self.catalog.n_items, self.decay, 0, "binary")
        sources = query.indices
        mean = query.data @ self.vectors[sources]
        norm = float(np.linalg.norm(mean))
        if norm == 0 or not len(sources):
            return []
        picked = self._best(self.vectors @ (mean / norm) + self.prior, limit, filter, excluded)
        if not picked:
            return []
        items = np.array([i for i, _ in picked], dtype=np.int64)
        parts = (self.vectors[sources] @ self.vectors[items].T) * query.data[:, None]
        best = sources[np.argmax(parts, axis=0)]
        cat = self.catalog
        return [
            (i, s, f"because you liked {cat.titles[b] or cat.product_ids[b]}")
            for (i, s), b in zip(picked, best.tolist(), strict=True)
        ]

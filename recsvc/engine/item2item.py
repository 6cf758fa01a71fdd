"""Serving the bundle's item-to-item model (training/item2item.py), alone or blended with ALS.

A customer's scores are the recency-weighted sum of the neighbour rows of their most recent
products: one sparse product of a query row (at most ``recent`` products, built by
formats.history's ``query``, as training evaluated it) with the neighbour table. Candidates
go through the same filters and category cap as ALS's (``Retrieval.take``) and the engine
fills the rest with popular products, as for ALS. The reason of an item is the history
product that contributed most to its score, so recent products win ties.

Blend: ALS score + beta x item-to-item score over the union of ALS's best and the
neighbours' candidates (beta from the manifest, chosen on training's held-out split).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from formats.bundle import Bundle, BundleError
from formats.history import History
from formats.types import Filter
from formats.weights import WeightConfig
from recsvc.engine.catalog import Catalog
from recsvc.engine.retrieval import Chosen, Picked, Retrieval

NAME = "item2item"  # the bundle extra and the manifest's serving value


class ItemToItem:
    def __init__(
        self,
        neighbours: csr_matrix,
        params: dict[str, Any],
        weights: WeightConfig,
        catalog: Catalog,
        retrieval: Retrieval,
    ) -> None:
        self.neighbours = neighbours
        self.decay = float(params.get("decay", 0.0))
        self.recent = int(params.get("recent", 0))
        self.beta = float(params.get("blend_beta", 0.0))
        self.confidence = weights.confidence
        self.catalog = catalog
        self.retrieval = retrieval

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        serving: dict[str, str],
        weights: WeightConfig,
        catalog: Catalog,
        retrieval: Retrieval,
    ) -> ItemToItem | None:
        """The model when ``serving`` (the manifest's) uses it for anything, else None."""
        if not {NAME, "blend"} & set(serving.values()):
            return None
        arrays = bundle.extras.get(NAME)
        params = bundle.manifest.get("params", {}).get(NAME)
        n = catalog.n_items
        if arrays is None or not isinstance(params, dict):
            raise BundleError(f"{bundle.path}: the manifest serves {NAME} but the bundle has none")
        try:
            neighbours = csr_matrix(
                (arrays["data"], arrays["indices"], arrays["indptr"]), shape=(n, n)
            )
            neighbours.check_format(full_check=True)
        except (KeyError, ValueError) as exc:
            raise BundleError(f"{bundle.path}: damaged {NAME} extra: {exc}") from exc
        return cls(neighbours, params, weights, catalog, retrieval)

    def query(self, history: History) -> csr_matrix:
        return history.query(self.catalog.n_items, self.decay, self.recent, self.confidence)

    def recommend(
        self,
        history: History,
        vector: np.ndarray | None,
        limit: int,
        filter: Filter,
        excluded: set[int],
        blend: bool = False,
    ) -> Chosen:
        """The best eligible products with their reasons ("" where ALS must explain); with
        ``blend`` and a customer vector, ALS's scores are added."""
        query = self.query(history)
        scored = query @ self.neighbours
        idx, scores = scored.indices.astype(np.int64), scored.data.astype(np.float32)
        if blend and vector is not None and np.any(vector):
            als = self.retrieval.best(vector, limit, filter, excluded)
            known = set(idx.tolist())
            extra = np.array([i for i, _ in als if i not in known], dtype=np.int64)
            idx = np.concatenate([idx, extra])
            scores = np.concatenate([self.beta * scores, np.zeros(len(extra), np.float32)])
            scores = scores + self.catalog.vectors(idx) @ vector
        else:
            positive = scores > 0  # the rest rank by popularity, as training scored it
            idx, scores = idx[positive], scores[positive]
        order = np.argsort(-scores, kind="stable")
        picked = self.retrieval.take(idx[order], scores[order], limit, filter, excluded)
        return self.explain(query, picked)

    def explain(self, query: csr_matrix, picked: Picked) -> Chosen:
        """Each item's reason: the query product whose neighbour row gave it the most."""
        if not picked or query.nnz == 0:
            return [(i, s, "") for i, s in picked]
        cat = self.catalog
        items = np.array([i for i, _ in picked], dtype=np.int64)
        sources = query.indices
        parts = self.neighbours[sources][:, items].toarray() * query.data[:, None]
        best = np.argmax(parts, axis=0)
        chosen: Chosen = []
        for col, (i, s) in enumerate(picked):
            if parts[best[col], col] > 0:
                b = int(sources[best[col]])
                chosen.append((i, s, f"because you liked {cat.titles[b] or cat.product_ids[b]}"))
            else:
                chosen.append((i, s, ""))
        return chosen

    def similar(self, idx: int, limit: int, filter: Filter, excluded: set[int]) -> Picked:
        """A product's neighbours with positive weight, best first, filtered."""
        n = self.neighbours
        lo, hi = int(n.indptr[idx]), int(n.indptr[idx + 1])
        ids, weights = n.indices[lo:hi].astype(np.int64), n.data[lo:hi]
        keep = weights > 0
        ids, weights = ids[keep], weights[keep]
        order = np.argsort(-weights, kind="stable")
        return self.retrieval.take(ids[order], weights[order], limit, filter, excluded)

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
from formats.history import History, row_entries
from formats.types import Filter
from formats.weights import WeightConfig
from recsvc.engine.catalog import Catalog
from recsvc.engine.retrieval import Chosen, Picked, Retrieval

NAME = "item2item"  # the bundle extra and the manifest's serving value
HEAD = 8  # candidates sorted first per request: this many times the limit (plus the excluded)


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

    def contributions(self, history: History) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(source product, neighbour, weight x neighbour weight) of every neighbour-table
        entry the customer's query reaches: at most ``recent`` x ``neighbours`` of them."""
        sources, weights = history.query_weights(self.decay, self.recent, self.confidence)
        n = self.neighbours
        entries, counts = row_entries(n.indptr, sources)
        return (
            np.repeat(sources, counts),
            n.indices[entries].astype(np.int64),
            n.data[entries] * np.repeat(weights, counts),
        )

    def totals(self, targets: np.ndarray, parts: np.ndarray) -> np.ndarray:
        """Every product's score: the sum of its contributions (float64, one per product)."""
        result: np.ndarray = np.bincount(targets, weights=parts, minlength=self.catalog.n_items)
        return result

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
        sources, targets, parts = self.contributions(history)
        n_items = self.catalog.n_items
        # One sum per product of the catalog (a bincount: no sort), over the products reached.
        totals = self.totals(targets, parts)
        reached = np.zeros(n_items, dtype=bool)
        reached[targets] = True
        idx = np.flatnonzero(reached)
        scores = totals[idx].astype(np.float32)
        if blend and vector is not None and np.any(vector):
            # The neighbours' head and ALS's best: a product outside both has neither score
            # high enough to place (and computing ALS over thousands of them costs ms).
            n = limit * HEAD + len(excluded)
            if len(idx) > n:
                head = np.argpartition(-scores, n - 1)[:n]
                idx, scores = idx[head], scores[head]
            in_head = np.zeros(n_items, dtype=bool)
            in_head[idx] = True
            als = np.array(
                [i for i, _ in self.retrieval.best(vector, limit, filter, excluded)],
                dtype=np.int64,
            )
            extra = als[~in_head[als]]
            # ALS's pick that the neighbours reached outside their head keeps its neighbour
            # score (0 where they did not reach it).
            extra_scores = totals[extra].astype(np.float32)
            idx = np.concatenate([idx, extra])
            scores = np.concatenate([self.beta * scores, self.beta * extra_scores])
            scores = scores + self.catalog.vectors(idx) @ vector
        else:
            positive = scores > 0  # the rest rank by popularity, as training scored it
            idx, scores = idx[positive], scores[positive]
        picked = self.take_best(idx, scores, limit, filter, excluded)
        return self.explain((sources, targets, parts), picked)

    def take_best(
        self, idx: np.ndarray, scores: np.ndarray, limit: int, filter: Filter, excluded: set[int]
    ) -> Picked:
        """The first ``limit`` eligible candidates by score. Only the head is sorted when there
        are many; all of them are when filters eat into it."""
        n = limit * HEAD + len(excluded)
        if len(idx) > 2 * n:
            head = np.argpartition(-scores, n - 1)[:n]
            head = head[np.argsort(-scores[head], kind="stable")]
            picked = self.retrieval.take(idx[head], scores[head], limit, filter, excluded)
            if len(picked) >= limit:
                return picked
        order = np.argsort(-scores, kind="stable")
        return self.retrieval.take(idx[order], scores[order], limit, filter, excluded)

    def explain(
        self, contributions: tuple[np.ndarray, np.ndarray, np.ndarray], picked: Picked
    ) -> Chosen:
        """Each item's reason: the query product whose neighbour row gave it the most."""
        sources, targets, parts = contributions
        items = np.array([i for i, _ in picked], dtype=np.int64)
        mark = np.zeros(self.catalog.n_items, dtype=bool)
        mark[items] = True
        hit = np.flatnonzero(mark[targets])
        # Per item, its largest contribution (sorted by item, then contribution, descending).
        hit = hit[np.lexsort((-parts[hit], targets[hit]))]
        first = np.ones(len(hit), dtype=bool)
        first[1:] = targets[hit][1:] != targets[hit][:-1]
        best = {
            int(t): (int(src), float(v))
            for t, src, v in zip(
                targets[hit][first], sources[hit][first], parts[hit][first], strict=True
            )
        }
        cat = self.catalog
        chosen: Chosen = []
        for i, s in picked:
            src, value = best.get(i, (-1, 0.0))
            why = (
                f"because you liked {cat.titles[src] or cat.product_ids[src]}" if value > 0 else ""
            )
            chosen.append((i, s, why))
        return chosen

    def similar(self, idx: int, limit: int, filter: Filter, excluded: set[int]) -> Picked:
        """A product's neighbours with positive weight, best first, filtered."""
        n = self.neighbours
        lo, hi = int(n.indptr[idx]), int(n.indptr[idx + 1])
        ids, weights = n.indices[lo:hi].astype(np.int64), n.data[lo:hi]
        keep = weights > 0
        ids, weights = ids[keep], weights[keep]
        return self.take_best(ids, weights, limit, filter, excluded)

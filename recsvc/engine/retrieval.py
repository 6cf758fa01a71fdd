"""Candidates for a query vector: index search (or exact scoring of a category filter's
products), vectorised filtering, the category cap, and the popularity top-up that fills a
response to ``limit`` whenever enough eligible products exist. Products created live are
scored exactly beside the index (``Catalog.live_scores``) and merged by score."""

from __future__ import annotations

from typing import Any

import numpy as np

from formats.types import Filter
from recsvc.engine.catalog import Catalog
from recsvc.engine.config import EngineConfig

Picked = list[tuple[int, float]]  # (product index, score), best first
Chosen = list[tuple[int, float, str]]  # (product index, score, reason)


class Retrieval:
    def __init__(self, catalog: Catalog, index: Any, config: EngineConfig) -> None:
        self.catalog = catalog
        self.index = index  # faiss inner-product index over the item vectors
        self.config = config

    def cap(self, filter: Filter) -> int:
        return filter.max_per_category or self.config.max_per_category

    def take(
        self,
        idx: np.ndarray,
        scores: np.ndarray,
        limit: int,
        filter: Filter,
        excluded: set[int],
        chosen: Picked | None = None,
    ) -> Picked:
        """The first ``limit`` eligible candidates in order, honouring the category cap."""
        category = self.catalog.category
        picked = list(chosen or [])
        ok = self.catalog.eligible(idx, filter, excluded)
        cap = self.cap(filter)
        per_category: dict[int, int] = {}
        for i, _ in picked:
            c = int(category[i])
            per_category[c] = per_category.get(c, 0) + 1
        taken = {i for i, _ in picked}
        for i, s in zip(idx[ok].tolist(), scores[ok].tolist(), strict=True):
            if len(picked) >= limit:
                break
            if i in taken:
                continue
            c = int(category[i])
            if cap and per_category.get(c, 0) >= cap:
                continue
            per_category[c] = per_category.get(c, 0) + 1
            taken.add(i)
            picked.append((i, s))
        return picked

    def best(self, query: np.ndarray, limit: int, filter: Filter, excluded: set[int]) -> Picked:
        """Best products for ``query`` by inner product, filtered."""
        cfg, cat = self.config, self.catalog
        codes = cat.codes(filter.include_categories) if filter.include_categories else None
        if codes is not None:
            # A category filter can exclude almost everything the index would return first;
            # score that category's products exactly instead when there are few enough.
            slices = [cat.category_slice[c] for c in codes]
            if sum(end - start for start, end in slices) <= cfg.direct_score_max:
                return self._best_direct(query, slices, codes, limit, filter, excluded)
        # Excluded products can each displace one result at most: add them, don't multiply.
        k = min(cat.n_items, limit * cfg.overfetch + len(excluded))
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        while True:
            scores, ids = self.index.search(q, k)
            found, found_scores = self.with_live(q[0], ids[0], scores[0], k, None)
            picked = self.take(found, found_scores, limit, filter, excluded)
            if len(picked) >= limit or k >= min(cat.n_items, cfg.max_fetch):
                return picked
            k = min(cat.n_items, cfg.max_fetch, k * 4)

    def with_live(
        self,
        query: np.ndarray,
        ids: np.ndarray,
        scores: np.ndarray,
        k: int,
        codes: list[int] | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Index results merged with the ``k`` best live products, best first."""
        if not self.catalog.n_live:
            return ids, scores
        live, live_scores = self.catalog.live_scores(query, codes)
        if not len(live):
            return ids, scores
        if len(live) > k:
            head = np.argpartition(-live_scores, k - 1)[:k]
            live, live_scores = live[head], live_scores[head]
        merged = np.concatenate([ids.astype(np.int64), live])
        merged_scores = np.concatenate([scores, live_scores.astype(scores.dtype)])
        order = np.argsort(-merged_scores, kind="stable")
        return merged[order], merged_scores[order]

    def _best_direct(
        self,
        query: np.ndarray,
        slices: list[tuple[int, int]],
        codes: list[int],
        limit: int,
        filter: Filter,
        excluded: set[int],
    ) -> Picked:
        cat = self.catalog
        parts = [cat.grouped_factors[s:e] @ query for s, e in slices]
        id_parts = [cat.by_category[s:e].astype(np.int64) for s, e in slices]
        if cat.n_live:
            live, live_scores = cat.live_scores(query, codes)
            parts.append(live_scores)
            id_parts.append(live)
        scores = np.concatenate(parts or [np.zeros(0)])
        ids = np.concatenate(id_parts or [np.zeros(0, np.int64)])
        # Rank only the head unless filters or the category cap eat into it.
        n = min(len(scores), limit * self.config.overfetch + len(excluded))
        while True:
            head = np.argpartition(-scores, n - 1)[:n] if 0 < n < len(scores) else None
            top = np.arange(len(scores)) if head is None else head
            top = top[np.argsort(-scores[top], kind="stable")]
            picked = self.take(ids[top], scores[top], limit, filter, excluded)
            if len(picked) >= limit or head is None:
                return picked
            n = min(len(scores), n * 4)

    def fill_popular(self, chosen: Chosen, limit: int, filter: Filter, excluded: set[int]) -> int:
        """Top up ``chosen`` with popular eligible products; returns how many were added."""
        if len(chosen) >= limit:
            return 0
        cat = self.catalog
        codes = cat.codes(filter.include_categories) if filter.include_categories else None
        if codes is not None:
            pool = np.concatenate(
                [cat.popular_by_category[c] for c in codes] or [np.zeros(0, np.int64)]
            )
            pool = pool[np.argsort(-cat.popularity[pool], kind="stable")]
        else:
            pool = cat.popular_order
        if cat.n_live:  # live products have no popularity yet: they come last
            pool = np.concatenate([pool, cat.live_in(codes)])
        before = len(chosen)
        start = 0
        picked: Picked = [(i, s) for i, s, _ in chosen]
        # Walk the popularity order in slices so a huge catalog is not filtered whole.
        while len(picked) < limit and start < len(pool):
            part = pool[start : start + max(4 * limit, 1024)]
            picked = self.take(part, cat.popularity[part], limit, filter, excluded, picked)
            start += len(part)
        # Scores stay "higher is better" within a response: top-ups rank below what came first.
        floor = chosen[-1][1] if chosen else None
        for rank, (i, s) in enumerate(picked[before:], 1):
            score = s if floor is None else floor - rank * 1e-6
            chosen.append((i, score, f"popular in {cat.category_of(i)}"))
        return len(chosen) - before

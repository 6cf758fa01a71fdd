"""RecommendProducts for a block of known customers at once, in numpy: what ``Engine.plan``,
``Retrieval.best`` and ``Engine._explain`` do per request, done per block.

It covers the common case only, and says so (``Vectorised.applies``): ALS serving, no
per-category cap and no category filter scored exactly. Per customer it yields the first
``limit`` eligible candidates of the server's own index search (same depth, same FAISS call
shape per customer: customers asking for the same depth are searched together) and each
item's reason (the customer's trained product most like it, among the 50 most recent, recent
ones weighted up). A customer whose candidates fall short, or without a vector, is left to the
engine (``ok`` false), which searches deeper and tops up from popularity exactly as the server
does. tests/test_batch.py checks that every answer equals the engine's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from formats.history import row_entries
from formats.types import Filter
from formats.weights import sequence_factor
from recsvc.engine import Engine

SUB_BLOCK = 1024  # customers whose reason vectors are held at once (~25 MB at 128 factors)


@dataclass(frozen=True)
class Block:
    ok: np.ndarray  # bool per customer: answered here
    items: np.ndarray  # (customers, limit) product indexes (rows with ok only)
    scores: np.ndarray  # (customers, limit) float32
    liked: np.ndarray  # (customers, limit) product index behind the reason; n_items = none


class Vectorised:
    def __init__(self, engine: Engine, limit: int, filter: Filter) -> None:
        cat, cfg = engine.catalog, engine.config
        self.engine, self.limit, self.filter = engine, limit, filter
        cap = filter.max_per_category or cfg.max_per_category
        direct = False
        if filter.include_categories:
            codes = cat.codes(filter.include_categories)
            size = sum(cat.category_slice[c][1] - cat.category_slice[c][0] for c in codes)
            direct = size <= cfg.direct_score_max
        # Where another model than ALS serves, or filters need exact scoring: the engine.
        self.applies = not cap and not direct and engine.serving["recommend"] == "als"
        n = cat.n_items
        # Product-level eligibility (categories, stock, price): the engine's own test.
        self.product_ok = cat.eligible(np.arange(n, dtype=np.int64), filter, set())
        self.always_excluded = np.array(sorted(cat.indexes(filter.exclude_product_ids)), np.int64)

    def block(self, users: np.ndarray) -> Block:
        """Answers for customers ``users`` (row indexes of the bundle)."""
        engine, limit = self.engine, self.limit
        cat, cfg = engine.catalog, engine.config
        n = cat.n_items
        b = len(users)
        vectors = engine.user_factors[users]
        personalized = np.any(vectors != 0, axis=1)
        history = csr_matrix(engine.user_items[users])
        rows = np.repeat(np.arange(b), np.diff(history.indptr))
        bought = np.asarray(history.indices, dtype=np.int64)
        keep = np.ones(len(bought), dtype=bool)
        if self.filter.include_purchased:
            keep[:] = False
        else:
            keep &= ~cat.repeat_category[cat.category[bought]]
        keys = rows[keep] * n + bought[keep]
        if len(self.always_excluded):
            extra = (np.arange(b)[:, None] * n + self.always_excluded[None, :]).ravel()
            keys = np.concatenate([keys, extra])
        excluded = np.unique(keys)
        counts = np.bincount(excluded // n, minlength=b)
        depth = np.minimum(n, limit * cfg.overfetch + counts)

        ok = np.zeros(b, dtype=bool)
        items = np.full((b, limit), -1, dtype=np.int64)
        scores = np.zeros((b, limit), dtype=np.float32)
        for k in np.unique(depth[personalized]).tolist():
            members = np.flatnonzero(personalized & (depth == k))
            found_scores, found = engine.index.search(
                np.ascontiguousarray(vectors[members], dtype=np.float32), k
            )
            eligible = (found >= 0) & self.product_ok[np.maximum(found, 0)]
            keys = members[:, None] * n + found
            at = np.minimum(np.searchsorted(excluded, keys), max(len(excluded) - 1, 0))
            if len(excluded):
                eligible &= excluded[at] != keys  # a sorted lookup: np.isin hashes, 8x slower
            taken = np.cumsum(eligible, axis=1)
            full = taken[:, -1] >= limit
            # Short of candidates: the server would search deeper (or top up): engine's job.
            first = eligible & (taken <= limit)
            rows_ok = members[full]
            ok[rows_ok] = True
            items[rows_ok] = found[full][first[full]].reshape(-1, limit)
            scores[rows_ok] = found_scores[full][first[full]].reshape(-1, limit)
        liked = self._reasons(users, history, items, ok)
        return Block(ok, items, scores, liked)

    def _reasons(
        self, users: np.ndarray, history: csr_matrix, items: np.ndarray, ok: np.ndarray
    ) -> np.ndarray:
        """Per item, the product of the customer's ``reason_history`` most recent trained
        products most like it, recent ones weighted up, as ``Engine._explain``; n_items
        without history."""
        engine = self.engine
        cat, depth = engine.catalog, engine.config.reason_history
        n = cat.n_items
        hist, m = engine.histories, engine.user_items
        # The block's entries of the bundle's arrays, rows in order, then oldest first (rank,
        # ties in product order: the engine's stable argsort).
        entries, lengths = row_entries(m.indptr, users)
        rows = np.repeat(np.arange(len(users)), lengths)
        rank = hist.rank[entries].astype(np.int64)
        order = np.lexsort((rank, rows))
        entries, rank = entries[order], rank[order]
        indices = np.asarray(m.indices[entries], dtype=np.int64)
        weight = sequence_factor(
            rank, hist.events[users][rows], max(engine.weights.sequence_decay, 1.0)
        )
        indptr = np.concatenate(([0], np.cumsum(lengths)))
        kept = np.minimum(lengths, depth)
        recent = np.full((len(users), depth), -1, dtype=np.int64)
        recent_weight = np.ones((len(users), depth), dtype=np.float32)
        from_end = indptr[rows + 1] - 1 - np.arange(len(indices))
        last = from_end < depth
        columns = kept[rows[last]] - 1 - from_end[last]
        recent[rows[last], columns] = indices[last]
        recent_weight[rows[last], columns] = weight[last]
        liked = np.full(items.shape, n, dtype=np.int64)
        for start in range(0, len(users), SUB_BLOCK):
            part = slice(start, start + SUB_BLOCK)
            rows_ok = np.flatnonzero(ok[part] & (kept[part] > 0)) + start
            if len(rows_ok) == 0:
                continue
            mine = recent[rows_ok]
            w = recent_weight[rows_ok][:, None, :]
            item_vectors = cat.vectors(items[rows_ok])
            recent_vectors = cat.vectors(np.maximum(mine, 0))
            affinity = np.matmul(item_vectors, recent_vectors.transpose(0, 2, 1))
            affinity = np.where(affinity >= 0, affinity * w, affinity * (2.0 - w))
            affinity[np.broadcast_to((mine < 0)[:, None, :], affinity.shape)] = -np.inf
            best = np.argmax(affinity, axis=2)
            liked[rows_ok] = np.take_along_axis(mine, best, axis=1)
        return liked

"""The slots of a RecommendProducts answer beyond the personalized ranking: promotions (a
share of slots, or a score boost), exploration (new products picked by the customer's
affinity), and the fallback that fills the rest (trending when its counters are fresh, then
popularity). Each item says which slot kind it came from.

Order of work for one request of ``limit`` items:

1. boosts: products of a boosting promotion are scored exactly with the customer's vector,
   their scores multiplied by the boost (divided when negative), and merged into the ranking;
2. promotion slots: each active share promotion takes ``round(limit x share)`` slots (at
   least 1) with its best eligible products, by the customer's affinity (by trending, then
   popularity, for a customer without a vector);
3. exploration: ``round(limit x exploration_share)`` slots go to eligible products introduced
   within ``new_product_days`` with a positive affinity (never to fill: a customer without a
   vector, or no new product they like, leaves them to the ranking);
4. promotion and exploration items together take at most half of the list; they are spread
   evenly through it (promotions first), the personalized ranking fills the other positions,
   and trending then popular products fill what is left.

Scores never increase down the list: a placed item's score is clamped between its neighbours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from formats.errors import InvalidRequest
from formats.types import AttributeCondition, Filter
from recsvc.engine.catalog import NO_VECTOR, Catalog, in_codes, in_set
from recsvc.engine.config import EngineConfig
from recsvc.engine.retrieval import Chosen, Picked, Retrieval

DAY_MS = 86_400_000
MAX_SCORED = 200_000  # products of one promotion scored exactly per request, at most
MAX_CACHED = 20_000  # vectors of a promotion's products kept between requests, at most
# A trending source: category (None = all) -> (product id, interest events now), most first.
TrendingSource = Callable[[str | None], list[tuple[str, float]]]


@dataclass(frozen=True)
class PromotionRule:
    """What the engine needs of an active promotion (recsvc.promotions builds these)."""

    promotion_id: str
    categories: frozenset[str] = frozenset()  # every given part must hold
    products: frozenset[str] = frozenset()
    attributes: tuple[AttributeCondition, ...] = ()
    share: float = 0.0  # of the slots; 0 = a boost
    boost: float = 1.0  # multiplies the scores of matching products
    reason: str = ""


@dataclass(frozen=True)
class Levers:
    """Per-request inputs beyond the customer: active promotions and trending products."""

    promotions: tuple[PromotionRule, ...] = ()
    trending: TrendingSource | None = None
    now_ms: int = 0


@dataclass
class Placed:
    idx: int
    score: float
    reason: str
    slot: str
    promotion_id: str = ""


@dataclass
class _Cache:
    matches: dict[tuple[PromotionRule, int], np.ndarray] = field(default_factory=dict)
    sets: dict[tuple[PromotionRule, int], frozenset[int]] = field(default_factory=dict)
    young: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None  # key, idx, vectors
    vectors: dict[tuple[PromotionRule, int], np.ndarray] = field(default_factory=dict)


class Slots:
    def __init__(self, catalog: Catalog, retrieval: Retrieval, config: EngineConfig) -> None:
        self.catalog = catalog
        self.retrieval = retrieval
        self.config = config
        self._cache = _Cache()

    # -- products a promotion covers, new products --------------------------------------------
    def matches(self, rule: PromotionRule) -> np.ndarray:
        """Indexes of the products the promotion covers (cached until the catalog changes)."""
        cat = self.catalog
        key = (rule, cat.described)
        found = self._cache.matches.get(key)
        if found is not None:
            return found
        if rule.products:
            idx = np.array(sorted(cat.indexes(rule.products)), dtype=np.int64)
        else:
            idx = np.arange(cat.n_items, dtype=np.int64)
        if rule.categories:
            codes = cat.codes(rule.categories)
            idx = idx[in_codes(cat.category[idx], codes, len(cat.category_names))]
        if rule.attributes and len(idx):
            try:
                idx = idx[cat.attributes.mask(idx, rule.attributes)]
            except InvalidRequest:  # an attribute the catalog lacks: the promotion covers nothing
                idx = idx[:0]
        if len(self._cache.matches) > 256:
            self._cache.matches.clear()
        self._cache.matches[key] = idx
        return idx

    def match_set(self, rule: PromotionRule) -> frozenset[int]:
        key = (rule, self.catalog.described)
        found = self._cache.sets.get(key)
        if found is None:
            if len(self._cache.sets) > 256:
                self._cache.sets.clear()
            found = self._cache.sets[key] = frozenset(self.matches(rule).tolist())
        return found

    def young(self, now_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """Products introduced within ``new_product_days`` that have a vector, and their
        vectors (at most MAX_SCORED; cached for a minute or until the catalog changes)."""
        cat = self.catalog
        key = (cat.described, now_ms // 60_000)
        cached = self._cache.young
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        since = now_ms - int(self.config.new_product_days * DAY_MS)
        introduced, source = cat.introduced_ms, cat.source
        n = min(len(introduced), len(source))
        idx = np.flatnonzero((introduced[:n] >= since) & (source[:n] != NO_VECTOR))
        idx = idx[-MAX_SCORED:]  # the newest
        vectors = cat.vectors(idx)
        self._cache.young = (key, idx, vectors)
        return idx, vectors

    def match_vectors(self, rule: PromotionRule) -> tuple[np.ndarray, np.ndarray]:
        """The promotion's products (at most MAX_SCORED) and their vectors; the vectors are
        cached when there are at most MAX_CACHED of them."""
        idx = self.matches(rule)[:MAX_SCORED]
        if len(idx) > MAX_CACHED:
            return idx, self.catalog.vectors(idx)
        key = (rule, self.catalog.described)
        found = self._cache.vectors.get(key)
        if found is None:
            if len(self._cache.vectors) > 64:
                self._cache.vectors.clear()
            found = self._cache.vectors[key] = self.catalog.vectors(idx)
        return idx, found

    # -- one request ----------------------------------------------------------------------------
    def finish(
        self,
        chosen: Chosen,
        vector: np.ndarray | None,
        limit: int,
        filter: Filter,
        excluded: set[int],
        levers: Levers,
        explain: Callable[[Chosen], None],
    ) -> tuple[list[Placed], int]:
        """The answer's items from the personalized ``chosen`` (empty without a vector);
        returns them and how many came from the trending/popular fill."""
        rules = levers.promotions
        boosts = [r for r in rules if r.share <= 0 and r.boost != 1.0]
        base = [Placed(i, s, why, "personalized") for i, s, why in chosen]
        if vector is not None and boosts:
            base = self._boost(base, vector, limit, filter, excluded, boosts, explain)
        budget = limit // 2
        specials: list[Placed] = []
        for rule in (r for r in rules if r.share > 0):
            n = min(max(1, round(limit * rule.share)), budget - len(specials))
            if n <= 0:
                break
            specials += self._promoted(rule, n, vector, filter, excluded, levers, specials)
        share = self.config.exploration_share
        if vector is not None and share > 0 and levers.now_ms:
            n = min(round(limit * share), budget - len(specials))
            if n > 0:
                specials += self._explore(n, vector, filter, excluded, levers.now_ms, specials)
        # Specials win: the ranking keeps what they leave (no item twice, the category cap).
        base = self._after(base, specials, self.retrieval.cap(filter))[: limit - len(specials)]
        filled = self._fill(base, specials, limit, filter, excluded, levers)
        return _merge(base, specials, limit), filled

    def _after(self, base: list[Placed], specials: list[Placed], cap: int) -> list[Placed]:
        """``base`` without the items of ``specials``, within the category ``cap``."""
        taken = {p.idx for p in specials}
        category = self.catalog.category
        count: dict[int, int] = {}
        for p in specials:
            c = int(category[p.idx])
            count[c] = count.get(c, 0) + 1
        kept = []
        for p in base:
            c = int(category[p.idx])
            if p.idx in taken or (cap and count.get(c, 0) >= cap):
                continue
            count[c] = count.get(c, 0) + 1
            kept.append(p)
        return kept

    def _boost(
        self,
        base: list[Placed],
        vector: np.ndarray,
        limit: int,
        filter: Filter,
        excluded: set[int],
        rules: list[PromotionRule],
        explain: Callable[[Chosen], None],
    ) -> list[Placed]:
        known = {p.idx: p for p in base}
        pool: dict[int, float] = {p.idx: p.score for p in base}
        for rule in rules:
            idx, vectors = self.match_vectors(rule)
            if not len(idx):
                continue
            scores = vectors @ vector
            top = np.argsort(-scores, kind="stable")[: limit * 2]
            pool.update(zip(idx[top].tolist(), scores[top].tolist(), strict=True))
        ids = np.fromiter(pool, dtype=np.int64, count=len(pool))
        raw = np.fromiter(pool.values(), dtype=np.float64, count=len(pool))
        factor = np.ones(len(ids))
        promo = [""] * len(ids)
        for rule in rules:
            hit = in_set(ids, self.match_set(rule))
            factor[hit] *= rule.boost
            for j in np.flatnonzero(hit).tolist():
                promo[j] = promo[j] or rule.promotion_id
        boosted = np.where(raw > 0, raw * factor, raw / factor)
        order = np.argsort(-boosted, kind="stable")
        picked = self.retrieval.take(ids[order], boosted[order], limit, filter, excluded)
        by_id = {int(i): j for j, i in enumerate(ids.tolist())}
        fresh: Chosen = [(i, s, "") for i, s in picked if i not in known]
        explain(fresh)
        reasons = {i: why for i, _, why in fresh}
        out = []
        for i, s in picked:
            j = by_id[i]
            why = known[i].reason if i in known else reasons[i]
            promotion = promo[j] if factor[j] != 1.0 else ""
            out.append(Placed(i, s, why, "personalized", promotion))
        return out

    def _rank(
        self,
        idx: np.ndarray,
        vectors: np.ndarray,
        vector: np.ndarray | None,
        levers: Levers,
        filter: Filter,
        excluded: set[int],
        n: int,
        after: list[Placed],
    ) -> Picked:
        """The ``n`` best eligible of ``idx``: by affinity, or by trending then popularity."""
        cat = self.catalog
        if vector is not None:
            scores = (vectors @ vector).astype(np.float64)
        else:
            scores = cat.popularity[idx].astype(np.float64)
            trend = dict(levers.trending(None)) if levers.trending is not None else {}
            if trend:
                bonus = np.array([trend.get(cat.product_ids[i], 0.0) for i in idx.tolist()])
                scores = scores + bonus * (float(scores.max(initial=0.0)) + 1.0)
        order = np.argsort(-scores, kind="stable")
        # Items already in the answer count for the category cap and are not taken twice.
        prior: Picked = [(p.idx, p.score) for p in after]
        picked = self.retrieval.take(
            idx[order], scores[order], n + len(prior), filter, excluded, prior
        )
        return picked[len(prior) :]

    def _promoted(
        self,
        rule: PromotionRule,
        n: int,
        vector: np.ndarray | None,
        filter: Filter,
        excluded: set[int],
        levers: Levers,
        after: list[Placed],
    ) -> list[Placed]:
        idx, vectors = self.match_vectors(rule)
        picked = self._rank(idx, vectors, vector, levers, filter, excluded, n, after)
        cat = self.catalog
        return [
            Placed(
                i,
                s,
                rule.reason or f"featured in {cat.category_of(i)}",
                "promotion",
                rule.promotion_id,
            )
            for i, s in picked
        ]

    def _explore(
        self,
        n: int,
        vector: np.ndarray,
        filter: Filter,
        excluded: set[int],
        now_ms: int,
        after: list[Placed],
    ) -> list[Placed]:
        idx, vectors = self.young(now_ms)
        picked = self._rank(idx, vectors, vector, Levers(), filter, excluded, n, after)
        cat = self.catalog
        return [
            Placed(i, s, f"new in {cat.category_of(i)}", "exploration") for i, s in picked if s > 0
        ]

    def _fill(
        self,
        base: list[Placed],
        specials: list[Placed],
        limit: int,
        filter: Filter,
        excluded: set[int],
        levers: Levers,
    ) -> int:
        """Top ``base`` up so that it and ``specials`` make ``limit``: trending products
        first, then popular ones, scored just below the last item of ``base``."""
        before = len(base)
        if before + len(specials) >= limit:
            return 0
        cat = self.catalog
        floor = base[-1].score if base else None
        fresh: list[Placed] = []
        if levers.trending is not None:
            names: list[str | None] = [*sorted(filter.include_categories)] or [None]
            counts: dict[str, float] = {}
            for name in names:
                for pid, n in levers.trending(name):
                    counts[pid] = max(counts.get(pid, 0.0), n)
            ranked = sorted(counts.items(), key=lambda kv: -kv[1])
            idx = np.array([cat.product_index.get(p, -1) for p, _ in ranked], dtype=np.int64)
            scores = np.array([c for _, c in ranked], dtype=np.float64)
            prior: Picked = [(p.idx, p.score) for p in base + specials]
            picked = self.retrieval.take(idx, scores, limit, filter, excluded, prior)
            fresh += [
                Placed(i, s, f"trending in {cat.category_of(i)}", "trending")
                for i, s in picked[len(prior) :]
            ]
        if before + len(specials) + len(fresh) < limit:
            chosen: Chosen = [(p.idx, p.score, p.reason) for p in base + specials + fresh]
            start = len(chosen)
            self.retrieval.fill_popular(chosen, limit, filter, excluded)
            fresh += [Placed(i, s, why, "popular") for i, s, why in chosen[start:]]
        for rank, item in enumerate(fresh, 1):
            if floor is not None:  # scores keep decreasing below what came first
                item.score = floor - rank * 1e-6
        base += fresh
        return len(fresh)


def _merge(base: list[Placed], specials: list[Placed], limit: int) -> list[Placed]:
    """Specials spread evenly through the list; scores made non-increasing around them."""
    total = min(limit, len(base) + len(specials))
    if not specials:
        return base[:total]
    slots = sorted(
        {min(total - 1, (j + 1) * total // (len(specials) + 1)) for j in range(len(specials))}
    )
    while len(slots) < len(specials):  # collisions in a short list: take the next free ones
        slots.append(next(p for p in range(total) if p not in slots))
        slots.sort()
    out: list[Placed | None] = [None] * total
    for position, item in zip(slots, specials, strict=False):
        out[position] = item
    rest = iter(base)
    merged = [item if item is not None else next(rest) for item in out]
    placed = {id(p) for p in specials}
    for i, item in enumerate(merged):
        if id(item) not in placed:
            continue
        high = merged[i - 1].score if i > 0 else np.inf
        low = (
            merged[i + 1].score
            if i + 1 < len(merged) and id(merged[i + 1]) not in placed
            else -np.inf
        )
        item.score = float(min(max(item.score, low), high))
        if i > 0 and item.score >= high:
            item.score = float(high - 1e-6)
    return merged

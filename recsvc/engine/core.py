"""The serving core: answers recommendation requests from one loaded model bundle.

Knows nothing of gRPC. Everything that can be computed once per bundle (id maps, category
codes, popularity orders, eligibility arrays) is computed when the engine is built; a
request does an index search over a few hundred candidates and vectorised filtering.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from feature_store.store import Activity
from formats.attribution import new_id
from formats.bundle import Bundle, load_bundle
from formats.content import EXTRA as CONTENT
from formats.content import ContentModel
from formats.errors import InvalidRequest, NotFound
from formats.ids import check_id
from formats.types import Context, Filter, Item, ModelInfo, ProductChange, Recommendation
from recsvc.engine import live
from recsvc.engine.catalog import FROM_CONTENT, FROM_MODEL, Catalog
from recsvc.engine.config import EngineConfig
from recsvc.engine.retrieval import Chosen, Picked, Retrieval
from recsvc.engine.slots import Levers, Placed, Slots, TrendingSource
from recsvc.fold_in import FoldIn


@dataclass
class Plan:
    """A RecommendProducts request, checked, with the customer's vector and exclusions."""

    customer_id: str
    limit: int
    filter: Filter
    excluded: set[int]  # product indexes never to return
    vector: np.ndarray | None
    history: np.ndarray  # product indexes, newest last (for reasons)
    personalized: bool


class Engine:
    """One bundle, ready to serve."""

    def __init__(self, bundle: Bundle, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.manifest = bundle.manifest
        self.version = bundle.version
        self.loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
        content = bundle.extras.get(CONTENT)
        self.content = ContentModel.from_arrays(content) if content else None
        self.catalog = Catalog(
            bundle.products,
            bundle.item_factors,
            self.config.repeat_categories,
            has_content=self.content is not None,
            introduced_ms=introduced_ms(bundle),
        )
        self.customer_index = {cid: i for i, cid in enumerate(bundle.customer_ids.to_list())}
        self.user_factors = bundle.user_factors
        # Keep the bundle's tables, not a second copy of its item vectors (the catalog holds
        # them grouped by category). A fresh empty array: a [:0] view would keep it alive.
        empty = np.zeros((0, bundle.item_factors.shape[1]), dtype=bundle.item_factors.dtype)
        self.bundle = replace(bundle, item_factors=empty)
        self.user_items = bundle.user_items
        self.index = bundle.index
        self.retrieval = Retrieval(self.catalog, self.index, self.config)
        self.slots = Slots(self.catalog, self.retrieval, self.config)
        self.fold_in = (
            FoldIn(
                self.manifest, self.catalog.grouped_factors, self.catalog.position, self.user_items
            )
            if self.config.fold_in
            else None
        )

    @classmethod
    def load(cls, path: Path, config: EngineConfig | None = None) -> Engine:
        return cls(load_bundle(path), config)

    def with_config(self, config: EngineConfig) -> Engine:
        """This engine's model under other settings (an experiment arm's options): the same
        catalog, index, vectors and fold-in solver, not copies. Catalog-level settings
        (repeat categories) stay those of this engine."""
        view = copy.copy(self)
        view.config = config
        view.retrieval = Retrieval(self.catalog, self.index, config)
        view.slots = Slots(self.catalog, view.retrieval, config)
        if not config.fold_in:
            view.fold_in = None
        elif view.fold_in is None:
            view.fold_in = FoldIn(
                self.manifest, self.catalog.grouped_factors, self.catalog.position, self.user_items
            )
        return view

    # -- requests -------------------------------------------------------------------------

    def recommend(
        self,
        customer_id: str,
        limit: int = 0,
        filter: Filter | None = None,
        context: Context | None = None,
        activity: Activity | None = None,
        levers: Levers | None = None,
    ) -> Recommendation:
        """Best products for the customer; ``activity`` (from the feature store, None when it
        is unavailable) adds what they did since the model was trained. A customer who
        declined personalization (``activity.consent`` false) gets popular products.
        ``levers``: active promotions and trending products (recsvc.engine.slots)."""
        return self.answer(self.plan(customer_id, limit, filter, context, activity), levers=levers)

    def plan(
        self,
        customer_id: str,
        limit: int = 0,
        filter: Filter | None = None,
        context: Context | None = None,
        activity: Activity | None = None,
    ) -> Plan:
        """Everything ``recommend`` knows before searching (batch jobs search many at once)."""
        check_id(customer_id, "customer_id")
        limit = self._limit(limit)
        filter = self._checked(filter)
        context = context or Context()
        cat = self.catalog
        excluded = cat.indexes(filter.exclude_product_ids)
        if context.current_product_id in cat.product_index:
            excluded.add(cat.product_index[context.current_product_id])
        vector, history, bought = self.customer_vector(customer_id, activity)
        if not filter.include_purchased:
            # Already-purchased products drop out, except repeat-purchase categories.
            excluded.update(bought[~cat.repeat_category[cat.category[bought]]].tolist())
        personalized = vector is not None and bool(np.any(vector))
        return Plan(customer_id, limit, filter, excluded, vector, history, personalized)

    def answer(
        self, plan: Plan, picked: Picked | None = None, levers: Levers | None = None
    ) -> Recommendation:
        """The answer to ``plan``; ``picked``: the personalized candidates when the caller
        already searched (``Retrieval.best`` for this plan would have returned them)."""
        chosen: Chosen = []
        if plan.personalized and plan.vector is not None:
            if picked is None:
                picked = self.retrieval.best(plan.vector, plan.limit, plan.filter, plan.excluded)
            chosen = [(idx, score, "") for idx, score in picked]
            self._explain(chosen, plan.history)
        levers = levers or Levers(now_ms=int(time.time() * 1000))
        placed, filled = self.slots.finish(
            chosen,
            plan.vector if plan.personalized else None,
            plan.limit,
            plan.filter,
            plan.excluded,
            levers,
            lambda fresh: self._explain(fresh, plan.history),
        )
        return Recommendation(
            items=self._placed(placed),
            model_version=self.version,
            recommendation_id=new_recommendation_id("rp"),
            personalized=plan.personalized,
            filled_from_popularity=filled if plan.personalized else 0,
        )

    def similar(
        self, product_id: str, limit: int = 0, filter: Filter | None = None
    ) -> Recommendation:
        check_id(product_id, "product_id")
        limit = self._limit(limit)
        cat = self.catalog
        idx = cat.product_index.get(product_id)
        if idx is None:
            raise NotFound(f"product {product_id!r} is not in the catalog of model {self.version}")
        filter = self._checked(filter)
        excluded = cat.indexes(filter.exclude_product_ids) | {idx}
        title = cat.titles[idx] or product_id
        vector = cat.vectors(idx)
        usable = int(cat.source[idx]) in (FROM_MODEL, FROM_CONTENT) and bool(np.any(vector))
        placed: list[Placed] = []
        if usable:
            # A product without history has a vector from its attributes: say so.
            by_content = int(cat.source[idx]) == FROM_CONTENT
            reason = f"similar to {title}" + (" by its attributes" if by_content else "")
            slot = "content" if by_content else "similar"
            best = self.retrieval.best(vector, limit, filter, excluded)
            placed = [Placed(i, s, reason, slot) for i, s in best]
        elif not filter.include_categories:
            # No vector at all: popular products of its category come first.
            own = replace(filter, include_categories=frozenset({cat.category_of(idx)}))
            placed = self._popular([], limit, own, excluded)
        placed = self._popular(placed, limit, filter, excluded)
        return Recommendation(
            items=self._placed(placed),
            model_version=self.version,
            recommendation_id=new_recommendation_id("sp"),
            personalized=False,
        )

    def rank(
        self, customer_id: str, product_ids: list[str], activity: Activity | None = None
    ) -> Recommendation:
        check_id(customer_id, "customer_id")
        if not product_ids:
            raise InvalidRequest("product_ids is empty; send the products to rank")
        if len(product_ids) > self.config.max_rank_ids:
            raise InvalidRequest(
                f"{len(product_ids)} product_ids; at most {self.config.max_rank_ids} per call"
            )
        for pid in product_ids:
            check_id(pid, "a product_id")
        cat = self.catalog
        unique = list(dict.fromkeys(product_ids))
        known = [p for p in unique if p in cat.product_index]
        unknown = [p for p in unique if p not in cat.product_index]
        idx = np.array([cat.product_index[p] for p in known], dtype=np.int64)
        vector, _, _ = self.customer_vector(customer_id, activity)
        personalized = vector is not None and bool(np.any(vector))
        if personalized and vector is not None:
            scores = cat.vectors(idx) @ vector
            reason, slot = "picked for you", "personalized"
        else:
            scores = cat.popularity[idx]
            reason, slot = "popular", "popular"
        order = np.argsort(-scores, kind="stable")
        items = [
            Item(known[o], float(scores[o]), reason, cat.category_of(idx[o]), slot) for o in order
        ]
        items += [Item(p, 0.0, "not in the catalog", "") for p in unknown]
        return Recommendation(
            items=items,
            model_version=self.version,
            recommendation_id=new_recommendation_id("rk"),
            personalized=personalized,
        )

    def trending(
        self,
        category: str = "",
        limit: int = 0,
        filter: Filter | None = None,
        source: TrendingSource | None = None,
    ) -> Recommendation:
        """The catalog's products with the most interest now (``source``: the feature store's
        decayed counters), overall or in ``category``; only products with enough of it."""
        limit = self._limit(limit)
        if category:
            check_id(category, "category")
        filter = self._checked(filter)
        cat = self.catalog
        rows = source(category or None) if source is not None else []
        idx = np.array([cat.product_index.get(p, -1) for p, _ in rows], dtype=np.int64)
        counts = np.array([n for _, n in rows], dtype=np.float64)
        excluded = cat.indexes(filter.exclude_product_ids)
        picked = self.retrieval.take(idx, counts, limit, filter, excluded)
        placed = [Placed(i, n, f"trending in {cat.category_of(i)}", "trending") for i, n in picked]
        return Recommendation(
            items=self._placed(placed),
            model_version=self.version,
            recommendation_id=new_recommendation_id("tr"),
            personalized=False,
        )

    def apply_changes(self, seq: int, changes: Sequence[ProductChange]) -> int:
        """Catalog changes from the feature store (stock, price, live products)."""
        return live.apply_changes(self.catalog, self.content, seq, changes)

    def categories_of(self, product_ids: Iterable[str]) -> dict[str, str]:
        """Category names of the given products that are in the catalog."""
        index = self.catalog.product_index
        return {p: self.catalog.category_of(index[p]) for p in product_ids if p in index}

    def info(self) -> ModelInfo:
        m = self.manifest
        models = m.get("evaluation", {}).get("models", {})
        return ModelInfo(
            version=self.version,
            created_at=str(m.get("created_at", "")),
            customers=len(self.customer_index),
            products=self.catalog.n_items,
            interactions=int(m.get("counts", {}).get("interactions", 0)),
            metrics={k: float(v) for k, v in models.get("als", {}).items()},
            index_kind=str(m.get("index", {}).get("kind", "")),
            index_recall=float(m.get("index", {}).get("recall", 0.0)),
            loaded_at=self.loaded_at,
        )

    # -- internals ------------------------------------------------------------------------

    @property
    def item_factors(self) -> np.ndarray:
        """All item vectors in product order (a copy: for tools and tests, not requests)."""
        return self.catalog.vectors(np.arange(self.catalog.n_items))

    def customer_vector(
        self, customer_id: str, activity: Activity | None
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """The customer's vector (None: no signal), history (newest last) and purchases."""
        if activity is not None and not activity.consent:
            empty = np.zeros(0, dtype=np.int64)
            return None, empty, empty
        user = self.customer_index.get(customer_id)
        trained = self._history(user)
        vector = self.user_factors[user] if user is not None else None
        if activity is None:
            return vector, trained, trained
        index = self.catalog.product_index
        recent = [
            (index[e.product_id], e.type, e.quantity, e.ts_ms)
            for e in activity.recent
            if e.product_id in index
        ]
        history = np.concatenate([trained, [r[0] for r in reversed(recent)]]).astype(np.int64)
        just_bought = np.fromiter(self.catalog.indexes(activity.purchased), dtype=np.int64)
        bought = np.concatenate([trained, just_bought]).astype(np.int64)
        # Live products are not in the solver's item vectors: they shape history, not fold-in.
        trained_recent = [r for r in recent if r[0] < self.catalog.n_trained]
        new = self.fold_in.new_events(trained_recent) if self.fold_in is not None else {}
        if new and self.fold_in is not None:
            vector = self.fold_in.vector(user, new)
        return vector, history, bought

    def _limit(self, limit: int) -> int:
        if limit == 0:
            return self.config.default_limit
        if not 1 <= limit <= self.config.max_limit:
            raise InvalidRequest(f"limit {limit} is out of range; send 1..{self.config.max_limit}")
        return limit

    def _history(self, user: int | None) -> np.ndarray:
        if user is None:
            return np.zeros(0, dtype=np.int32)
        m = self.user_items
        return np.asarray(m.indices[m.indptr[user] : m.indptr[user + 1]])

    def _explain(self, chosen: Chosen, history: np.ndarray) -> None:
        """Reason per item: the history product most like it ("because you liked X")."""
        if not chosen:
            return
        if len(history) == 0:
            chosen[:] = [(i, s, "picked for you") for i, s, _ in chosen]
            return
        cat = self.catalog
        recent = history[-self.config.reason_history :]
        items = np.array([i for i, _, _ in chosen], dtype=np.int64)
        affinity = cat.vectors(items) @ cat.vectors(recent).T
        best = recent[np.argmax(affinity, axis=1)]
        chosen[:] = [
            (i, s, f"because you liked {cat.titles[b] or cat.product_ids[b]}")
            for (i, s, _), b in zip(chosen, best.tolist(), strict=True)
        ]

    def _checked(self, filter: Filter | None) -> Filter:
        filter = (filter or Filter()).check()
        self.catalog.attributes.check(filter.attributes)
        return filter

    def _popular(
        self, placed: list[Placed], limit: int, filter: Filter, excluded: set[int]
    ) -> list[Placed]:
        """``placed`` topped up with popular eligible products."""
        chosen: Chosen = [(p.idx, p.score, p.reason) for p in placed]
        self.retrieval.fill_popular(chosen, limit, filter, excluded | {p.idx for p in placed})
        return placed + [Placed(i, s, why, "popular") for i, s, why in chosen[len(placed) :]]

    def _placed(self, placed: list[Placed]) -> list[Item]:
        cat = self.catalog
        return [
            Item(
                cat.product_ids[p.idx],
                float(p.score),
                p.reason,
                cat.category_of(p.idx),
                p.slot,
                p.promotion_id,
            )
            for p in placed
        ]


def introduced_ms(bundle: Bundle) -> np.ndarray:
    """When each product of the bundle appeared: its first interaction, or (no interactions,
    or a bundle without the ``catalog`` extra) the end of the training data."""
    end = int(bundle.manifest.get("data", {}).get("last_event_ms", 0))
    first = bundle.extras.get("catalog", {}).get("first_seen_ms")
    n = bundle.products.height
    if first is None or len(first) != n:
        return np.full(n, end, dtype=np.int64)
    first = np.asarray(first, dtype=np.int64)
    return np.where(first > 0, first, end)


def new_recommendation_id(source: str) -> str:
    """``<source>-<32 hex>``, source a key of formats.types.SOURCES (formats/attribution.py)."""
    return new_id(source)

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
from formats.bundle import Bundle, BundleError, load_bundle
from formats.content import EXTRA as CONTENT
from formats.content import ContentModel
from formats.errors import InvalidRequest, NotFound
from formats.history import SEQUENCE, Histories, History, empty_history, new_events
from formats.ids import check_id
from formats.limits import MAX_SESSION_PRODUCTS
from formats.types import Context, Filter, Item, ModelInfo, ProductChange, Recommendation
from formats.weights import WeightConfig, sequence_factor
from recsvc.engine import live
from recsvc.engine.catalog import FROM_CONTENT, FROM_MODEL, Catalog
from recsvc.engine.config import EngineConfig
from recsvc.engine.item2item import ItemToItem
from recsvc.engine.item2vec import Item2Vec
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
    history: History  # trained and new events (for item-to-item and reasons)
    personalized: bool
    kind: str = "recommend"  # or "session": a visitor known only by session_product_ids


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
        try:
            self.weights = WeightConfig.from_dict(
                self.manifest.get("params", {}).get("weights", {})
            )
        except (TypeError, ValueError) as exc:
            raise BundleError(f"{bundle.path}: bad params.weights in the manifest: {exc}") from exc
        # Histories in the order training saw them (the sequence extra; older bundles have
        # none), and the item-to-item model when the manifest serves one.
        self.histories = Histories(self.user_items, bundle.extras.get(SEQUENCE))
        # What serves each request kind (older manifests: ALS everywhere).
        self.serving = {"recommend": "als", "similar": "als", "session": "als"}
        self.serving.update(self.manifest.get("serving", {}))
        self.item2item = ItemToItem.from_bundle(
            bundle, self.serving, self.weights, self.catalog, self.retrieval
        )
        self.item2vec = Item2Vec.from_bundle(bundle, self.serving, self.catalog, self.retrieval)
        # last training event (ms): later real-time events are new; earlier ones are in the model
        self.cutoff_ms = int(self.manifest.get("data", {}).get("last_event_ms", 0))
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
        for name in ("item2item", "item2vec"):
            model = getattr(self, name)
            if model is not None:  # the same tables, searched with this view's settings
                model = copy.copy(model)
                model.retrieval = view.retrieval
                setattr(view, name, model)
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
        check_session(context.session_product_ids)
        cat = self.catalog
        excluded = cat.indexes(filter.exclude_product_ids)
        if context.current_product_id in cat.product_index:
            excluded.add(cat.product_index[context.current_product_id])
        vector, history, bought = self.customer_vector(customer_id, activity)
        kind = "recommend"
        if len(history.items) == 0 and context.session_product_ids:
            kind = "session"
            vector, history = self.session(context.session_product_ids)
            excluded.update(history.items.tolist())
        if not filter.include_purchased:
            # Already-purchased products drop out, except repeat-purchase categories.
            excluded.update(bought[~cat.repeat_category[cat.category[bought]]].tolist())
        personalized = vector is not None and bool(np.any(vector))
        return Plan(customer_id, limit, filter, excluded, vector, history, personalized, kind)

    def answer(
        self, plan: Plan, picked: Picked | None = None, levers: Levers | None = None
    ) -> Recommendation:
        """The answer to ``plan``; ``picked``: the personalized candidates when the caller
        already searched (``Retrieval.best`` for this plan would have returned them; used
        only where ALS serves the plan's kind)."""
        chosen: Chosen = []
        personalized = plan.personalized
        model, history = self.serving[plan.kind], plan.history
        args = (plan.limit, plan.filter, plan.excluded)
        if self.item2item is not None and model in ("item2item", "blend") and len(history.items):
            blend = model == "blend"
            chosen = self.item2item.recommend(history, plan.vector, *args, blend)
            personalized = True
        elif self.item2vec is not None and model == "item2vec" and len(history.items):
            chosen = self.item2vec.recommend(history, *args)
            personalized = True
        elif plan.personalized and plan.vector is not None:
            if picked is None:
                picked = self.retrieval.best(plan.vector, *args)
            chosen = [(idx, score, "") for idx, score in picked]
        self._explain(chosen, history)
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
            personalized=personalized,
            filled_from_popularity=filled if personalized else 0,
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
            model = self.serving["similar"] if idx < cat.n_trained else "als"
            if self.item2item is not None and model == "item2item":
                best = self.item2item.similar(idx, limit, filter, excluded)
            elif self.item2vec is not None and model == "item2vec":
                best = self.item2vec.similar(idx, limit, filter, excluded)
            else:
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
        vector, history, _ = self.customer_vector(customer_id, activity)
        personalized = vector is not None and bool(np.any(vector))
        i2i, model = self.item2item, self.serving["recommend"]
        if i2i is not None and model in ("item2item", "blend") and len(history.items) and len(idx):
            _, targets, parts = i2i.contributions(history)
            scores = i2i.totals(targets, parts)[idx].astype(np.float32)
            if model == "blend" and personalized and vector is not None:
                scores = cat.vectors(idx) @ vector + i2i.beta * scores
            personalized, reason, slot = True, "picked for you", "personalized"
        elif personalized and vector is not None:
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
            metrics={k: float(v) for k, v in models.get(str(m.get("model", "als")), {}).items()},
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
    ) -> tuple[np.ndarray | None, History, np.ndarray]:
        """The customer's vector (None: no signal), history (trained and new events) and
        purchases (everything trained on, and purchases since)."""
        if activity is not None and not activity.consent:
            return None, empty_history(), np.zeros(0, dtype=np.int64)
        user = self.customer_index.get(customer_id)
        history = self.histories.of(user)
        vector = self.user_factors[user] if user is not None else None
        if activity is None:
            return vector, history, history.items
        index = self.catalog.product_index
        recent = [
            (index[e.product_id], e.type, e.quantity, e.ts_ms)
            for e in activity.recent
            if e.product_id in index
        ]
        just_bought = np.fromiter(self.catalog.indexes(activity.purchased), dtype=np.int64)
        bought = np.concatenate([history.items, just_bought]).astype(np.int64)
        # Live products are in no trained table (fold-in, neighbours): they count as purchases
        # and filters, not as history.
        trained = [r for r in recent if r[0] < self.catalog.n_trained]
        new = new_events(trained, self.weights, self.cutoff_ms)
        history = history.add(new)
        if new and self.fold_in is not None:
            vector = self.fold_in.vector(history)
        return vector, history, bought

    def session(self, product_ids: tuple[str, ...]) -> tuple[np.ndarray | None, History]:
        """A visitor without history: their session's products (oldest first) as a history,
        each one interaction of weight 1, and the vector ALS would give it."""
        index = self.catalog.product_index
        known = [index[p] for p in product_ids if p in index][-self.config.reason_history :]
        history = empty_history(self.histories.exact).add([(i, 1.0) for i in known])
        vector = self.fold_in.vector(history) if self.fold_in is not None and known else None
        return vector, history

    def _limit(self, limit: int) -> int:
        if limit == 0:
            return self.config.default_limit
        if not 1 <= limit <= self.config.max_limit:
            raise InvalidRequest(f"limit {limit} is out of range; send 1..{self.config.max_limit}")
        return limit

    def _history(self, user: int | None) -> np.ndarray:
        """The customer's trained products, the most recent last."""
        return self.histories.of(user).oldest_first()

    def _explain(self, chosen: Chosen, history: History) -> None:
        """Reason per item still without one: the history product most like it ("because you
        liked X"), recent products weighted up."""
        if not chosen or all(why for _, _, why in chosen):
            return
        if len(history.items) == 0:
            chosen[:] = [(i, s, why or "picked for you") for i, s, why in chosen]
            return
        cat = self.catalog
        newest = np.argsort(history.rank, kind="stable")[-self.config.reason_history :]
        recent = history.items[newest]
        # exp(d (r - 1)) as training weighs the history; at least d = 1 so that of two
        # equally similar products the recent one is named.
        weight = sequence_factor(
            history.rank[newest],
            np.full(len(newest), history.events),
            max(self.weights.sequence_decay, 1.0),
        )
        items = np.array([i for i, _, _ in chosen], dtype=np.int64)
        affinity = cat.vectors(items) @ cat.vectors(recent).T
        # Scale towards the recent end whatever the sign: x w above zero, x (2 - w) below.
        affinity = np.where(affinity >= 0, affinity * weight, affinity * (2.0 - weight))
        best = recent[np.argmax(affinity, axis=1)]
        chosen[:] = [
            (i, s, why or f"because you liked {cat.titles[b] or cat.product_ids[b]}")
            for (i, s, why), b in zip(chosen, best.tolist(), strict=True)
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


def check_session(product_ids: tuple[str, ...]) -> None:
    if len(product_ids) > MAX_SESSION_PRODUCTS:
        raise InvalidRequest(
            f"context.session_product_ids has {len(product_ids)} products; send at most "
            f"{MAX_SESSION_PRODUCTS} (the most recent)"
        )
    for pid in product_ids:
        check_id(pid, "a context.session_product_ids entry")


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

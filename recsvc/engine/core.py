"""The serving core: answers recommendation requests from one loaded model bundle.

Knows nothing of gRPC. Everything that can be computed once per bundle (id maps, category
codes, popularity orders, eligibility arrays) is computed when the engine is built; a
request does an index search over a few hundred candidates and vectorised filtering.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from feature_store.store import Activity
from formats.attribution import new_id
from formats.bundle import Bundle, load_bundle
from formats.errors import InvalidRequest, NotFound
from formats.ids import check_id
from formats.types import Context, Filter, Item, ModelInfo, Recommendation
from recsvc.engine.catalog import Catalog
from recsvc.engine.config import EngineConfig
from recsvc.engine.retrieval import Chosen, Picked, Retrieval
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
        self.catalog = Catalog(bundle.products, bundle.item_factors, self.config.repeat_categories)
        self.customer_index = {cid: i for i, cid in enumerate(bundle.customer_ids.to_list())}
        self.user_factors = bundle.user_factors
        # Keep the bundle's tables, not a second copy of its item vectors (the catalog holds
        # them grouped by category). A fresh empty array: a [:0] view would keep it alive.
        empty = np.zeros((0, bundle.item_factors.shape[1]), dtype=bundle.item_factors.dtype)
        self.bundle = replace(bundle, item_factors=empty)
        self.user_items = bundle.user_items
        self.index = bundle.index
        self.retrieval = Retrieval(self.catalog, self.index, self.config)
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
    ) -> Recommendation:
        """Best products for the customer; ``activity`` (from the feature store, None when it
        is unavailable) adds what they did since the model was trained. A customer who
        declined personalization (``activity.consent`` false) gets popular products."""
        return self.answer(self.plan(customer_id, limit, filter, context, activity))

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
        filter = (filter or Filter()).check()
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

    def answer(self, plan: Plan, picked: Picked | None = None) -> Recommendation:
        """The answer to ``plan``; ``picked``: the personalized candidates when the caller
        already searched (``Retrieval.best`` for this plan would have returned them)."""
        chosen: Chosen = []
        if plan.personalized and plan.vector is not None:
            if picked is None:
                picked = self.retrieval.best(plan.vector, plan.limit, plan.filter, plan.excluded)
            chosen = [(idx, score, "") for idx, score in picked]
            self._explain(chosen, plan.history)
        filled = self.retrieval.fill_popular(chosen, plan.limit, plan.filter, plan.excluded)
        return Recommendation(
            items=self._items(chosen),
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
        filter = (filter or Filter()).check()
        excluded = cat.indexes(filter.exclude_product_ids) | {idx}
        reason = f"similar to {cat.titles[idx] or product_id}"
        best = self.retrieval.best(cat.vectors(idx), limit, filter, excluded)
        chosen: Chosen = [(i, s, reason) for i, s in best]
        self.retrieval.fill_popular(chosen, limit, filter, excluded)
        return Recommendation(
            items=self._items(chosen),
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
            reason = "picked for you"
        else:
            scores = cat.popularity[idx]
            reason = "popular"
        order = np.argsort(-scores, kind="stable")
        items = [Item(known[o], float(scores[o]), reason, cat.category_of(idx[o])) for o in order]
        items += [Item(p, 0.0, "not in the catalog", "") for p in unknown]
        return Recommendation(
            items=items,
            model_version=self.version,
            recommendation_id=new_recommendation_id("rk"),
            personalized=personalized,
        )

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
        new = self.fold_in.new_events(recent) if self.fold_in is not None else {}
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

    def _items(self, chosen: Chosen) -> list[Item]:
        cat = self.catalog
        return [Item(cat.product_ids[i], float(s), why, cat.category_of(i)) for i, s, why in chosen]


def new_recommendation_id(source: str) -> str:
    """``<source>-<32 hex>``, source a key of formats.types.SOURCES (formats/attribution.py)."""
    return new_id(source)

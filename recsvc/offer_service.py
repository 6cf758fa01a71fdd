"""RecommendOffers and offer redemptions: recsvc.offers' ranking fed from the feature store
and the model. No gRPC in here.

The catalog file (RECSVC_OFFERS) is loaded at start and by ReloadOffers; a file that fails
validation is refused and the catalog in use stays. Per request: the customer's standing and
this customer's use of each offer come from Redis (two round trips), the customer's affinity
to each offer's targets from the model vectors (fold-in included), and the ranking draws
from each offer's posterior (Thompson sampling).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
from redis.exceptions import RedisError

from feature_store import offer_usage
from feature_store.store import Activity, FeatureStore
from formats.errors import Unavailable
from formats.events import Event
from formats.ids import check_id
from formats.types import Context
from recsvc.engine import Engine, new_recommendation_id
from recsvc.offers import (
    CustomerState,
    OfferCatalog,
    OfferChoice,
    OfferContext,
    check_targets,
    load_catalog,
    recommend_offers,
)
from recsvc.realtime import Realtime

log = logging.getLogger(__name__)
AFFINITY_SAMPLE = 2000  # customers whose scores calibrate each offer's affinity z-score


@dataclass(frozen=True)
class OfferRecommendation:
    offers: list[OfferChoice]
    recommendation_id: str
    catalog_version: str
    personalized: bool
    targets: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]  # offer -> (categories, products)


class Affinity:
    """Per offer: the mean item vector of its targets, and how customers' scores on it spread
    (mean, std over a sample of trained customers), so a score becomes a z-score."""

    def __init__(self, engine: Engine, catalog: OfferCatalog) -> None:
        self.key = (engine.version, catalog.digest)
        rng = np.random.default_rng(0)
        users = engine.user_factors
        sample = users[rng.choice(len(users), size=min(len(users), AFFINITY_SAMPLE), replace=False)]
        self.targets: dict[str, tuple[np.ndarray, float, float]] = {}
        for offer in catalog.offers:
            idx = _target_indexes(engine, offer.categories, offer.products)
            if len(idx) == 0:
                continue  # store-wide, or targets the model does not know: affinity 0
            mean = engine.catalog.vectors(idx).mean(axis=0)
            scores = sample @ mean
            self.targets[offer.offer_id] = (mean, float(scores.mean()), float(scores.std()) or 1.0)

    def of(self, vector: np.ndarray | None) -> dict[str, float]:
        if vector is None:
            return {}
        return {o: (float(vector @ m) - mu) / sd for o, (m, mu, sd) in self.targets.items()}


def _target_indexes(
    engine: Engine, categories: tuple[str, ...], products: tuple[str, ...]
) -> np.ndarray:
    idx = [engine.catalog.product_index[p] for p in products if p in engine.catalog.product_index]
    for name in categories:
        code = engine.catalog.category_code.get(name)
        if code is not None:
            start, end = engine.catalog.category_slice[code]
            idx.extend(engine.catalog.by_category[start:end].tolist())
    return np.unique(np.asarray(idx, dtype=np.int64))


def customer_state(customer_id: str, activity: Activity | None) -> CustomerState:
    """What the offer rules may know of the customer; unknown customers are prospects."""
    if activity is None:
        return CustomerState.prospect(customer_id)
    profile = activity.profile or {}
    known = activity.profile is not None or bool(activity.counters)
    if not known:
        return CustomerState.prospect(customer_id)
    birthday = profile.get("birthday")
    return CustomerState(
        customer_id=customer_id,
        known=True,
        segment=str(profile.get("segment") or ""),
        lifecycle_stage=str(profile.get("lifecycle_stage") or ""),
        tier=activity.tier or "",
        points=int(activity.points),
        purchases=activity.purchases,
        birthday=date.fromisoformat(birthday) if isinstance(birthday, str) and birthday else None,
        consent_personalization=activity.consent,
        top_categories=tuple(str(c) for c in profile.get("top_categories") or ()),
    )


class OfferService:
    def __init__(self, path: Path | None, realtime: Realtime) -> None:
        self.path = path
        self.realtime = realtime
        self._catalog: OfferCatalog | None = None
        self._affinity: Affinity | None = None
        self._lock = threading.Lock()
        if path is not None:
            self.reload()

    @property
    def catalog(self) -> OfferCatalog:
        catalog = self._catalog
        if catalog is None:
            raise Unavailable("no offer catalog is configured: set RECSVC_OFFERS to a file")
        return catalog

    @property
    def loaded(self) -> OfferCatalog | None:
        """The catalog in use, or None when no catalog is configured."""
        return self._catalog

    def offer_ids(self) -> list[str]:
        return [o.offer_id for o in self._catalog.offers] if self._catalog else []

    def reload(self) -> OfferCatalog:
        """Load the catalog file again; OfferCatalogError keeps the current one."""
        if self.path is None:
            raise Unavailable("no offer catalog is configured: set RECSVC_OFFERS to a file")
        catalog = load_catalog(self.path)
        with self._lock:
            self._catalog = catalog
        log.info(
            "offer catalog %s: %d offers (version %s)", self.path, len(catalog), catalog.digest[:12]
        )
        return catalog

    def _affinity_for(self, engine: Engine, catalog: OfferCatalog) -> Affinity:
        affinity = self._affinity
        if affinity is None or affinity.key != (engine.version, catalog.digest):
            affinity = Affinity(engine, catalog)  # once per model and catalog
            self._affinity = affinity
            product_ids, categories = (
                engine.catalog.product_index.keys(),
                engine.catalog.category_code.keys(),
            )
            for warning in check_targets(catalog, product_ids, categories):
                log.warning("%s of model %s (affinity 0 for it)", warning, engine.version)
        return affinity

    def recommend(
        self, engine: Engine, customer_id: str, limit: int = 0, context: Context | None = None
    ) -> OfferRecommendation:
        check_id(customer_id, "customer_id")
        catalog = self.catalog
        context = context or Context()
        activity = self.realtime.activity(engine, customer_id)
        customer = customer_state(customer_id, activity)
        store = self.realtime.store
        usage: dict[str, offer_usage.OfferUsage] = {}
        stats: dict[str, offer_usage.OfferStats] = {}
        if store is not None and activity is not None:
            try:
                usage, stats = offer_usage.offer_state(
                    store, customer_id, [o.offer_id for o in catalog.offers]
                )
            except RedisError as exc:  # degrade: rank without usage and observations
                log.debug("offer state unavailable: %s", exc)
        affinity: dict[str, float] = {}
        if customer.personalized:
            vector, _, _ = engine.customer_vector(customer_id, activity)
            affinity = self._affinity_for(engine, catalog).of(vector)
        choices = recommend_offers(
            catalog,
            customer,
            OfferContext(now=datetime.now(UTC), surface=context.surface, channel=context.device),
            usage,
            stats,
            affinity,
            limit,
            np.random.default_rng(),
        )
        offers = {c.offer_id: catalog.offer(c.offer_id) for c in choices}
        targets = {i: (o.categories, o.products) for i, o in offers.items()}
        return OfferRecommendation(
            offers=choices,
            recommendation_id=new_recommendation_id("of"),
            catalog_version=catalog.digest[:12],
            personalized=customer.personalized,
            targets=targets,
        )

    # -- redemptions -----------------------------------------------------------------------
    def check_redemption(self, store: FeatureStore, event: Event) -> str | None:
        """Count an offer_redeemed event against the offer's caps; None when allowed."""
        catalog = self._catalog
        if catalog is None:
            return None  # no catalog configured: no caps to enforce, the event is data
        if event.offer_id not in catalog:
            return f"offer {event.offer_id!r} is not in the offer catalog"
        offer = catalog.offer(event.offer_id)
        return offer_usage.redeem(
            store,
            offer.offer_id,
            event.customer_id,
            event.event_id,
            offer.cost,
            offer.max_redemptions_per_customer or 0,
            offer.budget or 0.0,
        )

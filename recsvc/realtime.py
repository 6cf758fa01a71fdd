"""The serving side of the feature store: real-time reads that never fail a request, event
tracking that acknowledges only what is stored, and catalog changes.

Reads (customer activity, catalog change sequence) take one round trip with a short timeout.
When Redis is down or slow, requests are answered from the bundle alone: the outage is logged
once when it starts and once when it ends, every call served without real-time features is
counted, and Redis is retried at most once per ``retry_interval`` until it answers again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from redis.exceptions import RedisError

from feature_store import catalog as products
from feature_store.keys import MAX_DESCRIBED
from feature_store.offer_usage import record_offer_events
from feature_store.store import Activity, FeatureStore, NotReplicated
from formats.attributes import STANDARD_COLUMNS
from formats.errors import InvalidRequest, LimitReached, NotFound, Unavailable
from formats.events import Event, check
from formats.ids import check_id, id_problem
from formats.limits import MAX_PRICE, MAX_PRODUCT_ATTRIBUTES, MAX_STOCK, MAX_TEXT_LENGTH
from formats.types import EventResult, ProductChange
from recsvc.engine import Engine

log = logging.getLogger(__name__)
MAX_EVENTS = 500
OFFER_KINDS = {
    "offer_impression": "impression",
    "offer_click": "click",
    "offer_redeemed": "redemption",
}
MAX_PRODUCT_UPDATES = 1000
T = TypeVar("T")


class Realtime:
    def __init__(
        self,
        store: FeatureStore | None,
        on_degraded: Callable[[], None] | None = None,
        on_outage: Callable[[], None] | None = None,
        retry_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.retry_interval = retry_interval
        self._on_degraded = on_degraded or (lambda: None)
        self._on_outage = on_outage or (lambda: None)
        self._state = threading.Lock()
        self._down_since: float | None = None  # monotonic time the outage was noticed
        self._next_try = 0.0
        self._degraded_calls = 0
        self._catalog = threading.Lock()
        # Set by the offer service: counts an offer_redeemed event against the offer's caps
        # (None = allowed, else the reason to reject it).
        self.check_redemption: Callable[[FeatureStore, Event], str | None] | None = None

    @property
    def available(self) -> bool:
        return self.store is not None and self._down_since is None

    # -- serving reads ---------------------------------------------------------------------
    def activity(self, engine: Engine, customer_id: str) -> Activity | None:
        """The customer's real-time activity, or None (answer from the bundle alone)."""

        def read(store: FeatureStore) -> Activity:
            activity = store.activity(customer_id)
            self._sync_catalog(engine, store, activity.change_seq)
            return activity

        return self._read(read)

    def sync_catalog(self, engine: Engine) -> None:
        """Apply catalog changes made since this engine last looked (one GET)."""
        self._read(lambda store: self._sync_catalog(engine, store, store.change_seq()))

    def trending(self, category: str | None, n: int) -> list[tuple[str, float]] | None:
        """The trend counters' top ``n`` (raw decayed scores), or None when Redis is not
        configured or down."""
        return self._read(lambda store: store.trending(category, n))

    def _read(self, fn: Callable[[FeatureStore], T]) -> T | None:
        """``fn(store)``, or None without a feature store, during an outage, or when it fails
        (then the outage starts): serving reads never fail a request."""
        store = self.store
        if store is None:  # no feature store configured: not an outage
            return None
        if not self._should_try():
            self._degraded()
            return None
        started = time.monotonic()
        try:
            result = fn(store)
        except RedisError as exc:
            self._failed(exc)
            self._degraded()
            return None
        self._succeeded(started)
        return result

    def _sync_catalog(self, engine: Engine, store: FeatureStore, seq: int) -> None:
        if seq < engine.catalog.change_seq:
            # The sequence went back: Redis lost its data (no AOF, FLUSHALL, a failover to a
            # replica behind). Start over, or changes would be ignored until it caught up.
            engine.catalog.change_seq = 0
        if seq <= engine.catalog.change_seq:
            return
        with self._catalog:  # one fetch per change, not one per concurrent request
            if seq <= engine.catalog.change_seq:
                return
            latest, changes = products.changes_since(store, engine.catalog.change_seq)
            created = engine.apply_changes(latest, changes)
        if created:
            log.info("%d products created live (change sequence %d)", created, latest)

    # -- writes ----------------------------------------------------------------------------
    def track(self, engine: Engine | None, events: list[Event]) -> list[EventResult]:
        """Validate each event, store the valid ones durably, then update real-time state.

        Raises Unavailable when Redis cannot store them: then nothing of the call was
        acknowledged and the client retries (replays are deduplicated by event_id).
        """
        if not events:
            raise InvalidRequest("events is empty; send 1..500 events")
        if len(events) > MAX_EVENTS:
            raise InvalidRequest(f"{len(events)} events; at most {MAX_EVENTS} per call")
        now_ms = int(time.time() * 1000)
        results: list[EventResult | None] = [None] * len(events)
        valid: list[tuple[int, Event]] = []
        for i, event in enumerate(events):
            reason = check(event, now_ms)
            if reason is not None:
                results[i] = EventResult(event.event_id, "rejected", reason)
            else:
                valid.append((i, event if event.ts_ms else replace(event, ts_ms=now_ms)))
        if valid:
            store = self._writable()
            valid = self._redeem(store, valid, results)
        if valid:
            try:
                ids = store.append_events([e for _, e in valid])
            except NotReplicated as exc:  # Redis answers: not an outage of the serving path
                raise Unavailable(
                    f"events not acknowledged: {exc}; retry the call (replays are deduplicated)"
                ) from None
            except RedisError as exc:
                self._failed(exc)
                raise Unavailable(
                    f"the feature store cannot store events ({exc}); nothing in this call "
                    "was stored: retry it"
                ) from None
            fresh = []
            for (i, event), stream_id in zip(valid, ids, strict=True):
                results[i] = EventResult(event.event_id, "accepted" if stream_id else "duplicate")
                if stream_id:
                    fresh.append(event)
            try:
                categories = engine.categories_of(e.product_id for e in fresh) if engine else {}
                store.apply_activity(fresh, categories)
                offer_events = [
                    (e.customer_id, e.offer_id, OFFER_KINDS[e.type], e.ts_ms)
                    for e in fresh
                    if e.type in OFFER_KINDS
                ]
                record_offer_events(store, offer_events)
            except RedisError as exc:
                # Stored, so acknowledged; only the real-time view misses them until retraining.
                self._failed(exc)
                log.warning(
                    "stored %d events but could not update real-time state: %s", len(fresh), exc
                )
        return [r for r in results if r is not None]

    def _redeem(
        self,
        store: FeatureStore,
        valid: list[tuple[int, Event]],
        results: list[EventResult | None],
    ) -> list[tuple[int, Event]]:
        """Count redemptions against their offers' caps first; over the cap = rejected.

        Counting is idempotent per event_id, so a retried batch is not counted twice.
        """
        check = self.check_redemption
        if check is None:
            return valid
        kept = []
        for i, event in valid:
            if event.type == "offer_redeemed":
                try:
                    reason = check(store, event)
                except NotReplicated as exc:
                    raise Unavailable(
                        f"redemption not acknowledged: {exc}; retry the call (it is counted "
                        "once per event_id)"
                    ) from None
                except RedisError as exc:
                    self._failed(exc)
                    raise Unavailable(
                        f"the feature store cannot check offer caps ({exc}); nothing in this "
                        "call was stored: retry it"
                    ) from None
                if reason is not None:
                    results[i] = EventResult(event.event_id, "rejected", reason)
                    continue
            kept.append((i, event))
        return kept

    def update_products(self, engine: Engine, changes: list[ProductChange]) -> int:
        """Validate and record stock, price and product definitions (an unknown product with
        a category is created); returns how many products changed. All or nothing."""
        if not changes:
            raise InvalidRequest("updates is empty; send 1..1000 product updates")
        if len(changes) > MAX_PRODUCT_UPDATES:
            raise InvalidRequest(f"{len(changes)} updates; at most {MAX_PRODUCT_UPDATES} per call")
        for c in changes:
            check_product_change(c)
        store = self._writable()
        try:
            self._sync_catalog(engine, store, store.change_seq())  # others' new products too
            new = self._check_against(engine, changes)
            if new and products.described_count(store) + len(new) > MAX_DESCRIBED:
                raise LimitReached(
                    f"the feature store holds the most products created live it keeps "
                    f"({MAX_DESCRIBED:,}); add them to the catalog file and retrain"
                )
            self._sync_catalog(engine, store, products.update_products(store, changes))
        except RedisError as exc:
            self._failed(exc)
            raise Unavailable(
                f"the feature store cannot record the changes ({exc}); retry"
            ) from None
        return len({c.product_id for c in changes})

    @staticmethod
    def _check_against(engine: Engine, changes: list[ProductChange]) -> set[str]:
        """Checks that need the served catalog; returns the ids of products to create."""
        catalog = engine.catalog
        new = {c.product_id for c in changes if c.product_id not in catalog.product_index}
        creators = {c.product_id for c in changes if c.category is not None}
        for c in changes:
            idx = catalog.product_index.get(c.product_id)
            if idx is None and c.product_id not in creators:
                raise NotFound(
                    f"product {c.product_id!r} is not in the catalog of model "
                    f"{engine.version}; send its category to create it"
                )
            if idx is not None and idx < catalog.n_trained and c.category is not None:
                trained = catalog.category_of(idx)
                if c.category != trained:
                    raise InvalidRequest(
                        f"{c.product_id!r} is in category {trained!r} in model {engine.version}; "
                        "a trained product's category changes with the next training run"
                    )
        return new

    def _writable(self) -> FeatureStore:
        if self.store is None:
            raise Unavailable("no feature store is configured (REDIS_URL); events cannot be stored")
        return self.store

    # -- outage bookkeeping ------------------------------------------------------------------
    def _should_try(self) -> bool:
        return self._down_since is None or time.monotonic() >= self._next_try

    def _degraded(self) -> None:
        self._degraded_calls += 1
        self._on_degraded()

    def _failed(self, exc: Exception) -> None:
        with self._state:
            now = time.monotonic()
            self._next_try = now + self.retry_interval
            if self._down_since is None:
                self._down_since = now
                self._degraded_calls = 0
                self._on_outage()
                log.warning(
                    "feature store unavailable (%s): serving from the model alone, without "
                    "real-time features; retrying every %.1f s",
                    exc,
                    self.retry_interval,
                )

    def _succeeded(self, started: float) -> None:
        """A call that ``started`` (monotonic) before the outage was noticed proves nothing."""
        if self._down_since is None:
            return
        with self._state:
            if self._down_since is None or started < self._down_since:
                return
            lasted = time.monotonic() - self._down_since
            self._down_since = None
            log.warning(
                "feature store back after %.1f s; %d calls were answered without it",
                lasted,
                self._degraded_calls,
            )


def check_product_change(c: ProductChange) -> None:
    """InvalidRequest when one update cannot be recorded (bounds, lengths, names)."""
    pid = c.product_id
    check_id(pid, "product_id")
    if c.stock is None and c.price is None and not c.describes:
        raise InvalidRequest(
            f"update of {pid!r} sets nothing; send stock, price, title, category or attributes"
        )
    if c.stock is not None and not 0 <= c.stock <= MAX_STOCK:
        raise InvalidRequest(f"stock {c.stock} of {pid!r} is outside 0..{MAX_STOCK:,}")
    if c.price is not None and not (math.isfinite(c.price) and 0 <= c.price <= MAX_PRICE):
        raise InvalidRequest(f"price {c.price:g} of {pid!r} is not a number in 0..{MAX_PRICE:g}")
    if c.category is not None and (problem := id_problem(c.category, f"category of {pid!r}")):
        raise InvalidRequest(problem)
    if c.title is not None and len(c.title) > MAX_TEXT_LENGTH:
        raise InvalidRequest(
            f"title of {pid!r} is {len(c.title)} characters long; the maximum is {MAX_TEXT_LENGTH}"
        )
    if len(c.attributes) > MAX_PRODUCT_ATTRIBUTES:
        raise InvalidRequest(
            f"{len(c.attributes)} attributes for {pid!r}; at most {MAX_PRODUCT_ATTRIBUTES}"
        )
    for name, value in c.attributes.items():
        if problem := id_problem(name, f"an attribute name of {pid!r}"):
            raise InvalidRequest(problem)
        if name in STANDARD_COLUMNS:
            raise InvalidRequest(
                f"attribute {name!r} of {pid!r}: {name} is a field of its own, not an attribute"
            )
        if len(value) > MAX_TEXT_LENGTH:
            raise InvalidRequest(
                f"attribute {name!r} of {pid!r} is {len(value)} characters long; the maximum "
                f"is {MAX_TEXT_LENGTH}"
            )

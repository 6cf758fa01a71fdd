"""Promotions while serving: the file (RECSVC_PROMOTIONS) loaded at start and by
ReloadPromotions (a file that fails validation is refused and the promotions in use stay),
the rules active for a request, and the served records that let `recsvc report` count each
promotion's impressions and clicks.

A response with promoted items appends one ``promotion_served`` record per such item to the
event stream (customer, recommendation_id, product, promotion; written with the trend
counters, at most a second later). Events the client sends back with that recommendation_id
and product (rec_impression, rec_click, purchase) are then attributed to the promotion.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

from redis.exceptions import RedisError

from formats.errors import Unavailable
from formats.events import SERVED, Event
from formats.types import Recommendation
from recsvc.engine.slots import PromotionRule
from recsvc.promotions.catalog import PromotionCatalog, load_promotions
from recsvc.realtime import Realtime

log = logging.getLogger(__name__)


class PromotionService:
    def __init__(self, path: Path | None, realtime: Realtime) -> None:
        self.path = path
        self.realtime = realtime
        self._catalog: PromotionCatalog | None = None
        self._lock = threading.Lock()
        if path is not None:
            self.reload()

    @property
    def catalog(self) -> PromotionCatalog | None:
        return self._catalog

    def reload(self) -> PromotionCatalog:
        """Load the file again; PromotionsError keeps the promotions in use."""
        if self.path is None:
            raise Unavailable("no promotions file is configured: set RECSVC_PROMOTIONS to a file")
        catalog = load_promotions(self.path)
        with self._lock:
            self._catalog = catalog
        log.info(
            "promotions %s: %d promotions (version %s)",
            self.path,
            len(catalog),
            catalog.digest[:12],
        )
        return catalog

    def active(self, surface: str, now: datetime | None = None) -> tuple[PromotionRule, ...]:
        catalog = self._catalog
        if catalog is None or not catalog.promotions:
            return ()
        return catalog.active(now or datetime.now(UTC), surface)

    def active_any(self, now: datetime | None = None) -> list[str]:
        """Ids of the promotions within their window now, on any surface."""
        catalog = self._catalog
        moment = now or datetime.now(UTC)
        return [p.promotion_id for p in catalog.promotions if p.live(moment)] if catalog else []

    def served(self, customer_id: str, rec: Recommendation, now_ms: int) -> None:
        """Record the promoted items of an answer (never fails the answer)."""
        store = self.realtime.store
        promoted = [i for i in rec.items if i.promotion_id]
        if store is None or not promoted:
            return
        records = [
            Event(
                event_id=f"{rec.recommendation_id}:{n}",
                customer_id=customer_id,
                type=SERVED,
                product_id=item.product_id,
                ts_ms=now_ms,
                recommendation_id=rec.recommendation_id,
                promotion_id=item.promotion_id,
            )
            for n, item in enumerate(promoted)
        ]
        try:
            store.record_served(records)
        except RedisError as exc:
            log.debug("promotion records not written: %s", exc)

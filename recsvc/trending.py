"""Trending products for serving: the feature store's decayed trend counters, read at most once
per ``refresh_s`` per category and worker, as interest events counted now.

The stored score of a product is the sum over its interest events of 2^((t - epoch) /
half-life) (``feature_store.keys.decay_factor``); divided by today's factor it is the number
of events decayed to now (7-day half-life). Only products with at least ``min_events`` of
them count as trending, so counters nobody has fed for weeks fade out of the answers on their
own: that is what "fresh" means here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from feature_store.keys import decay_factor
from recsvc.realtime import Realtime

Rows = list[tuple[str, float]]


@dataclass(frozen=True)
class TrendingConfig:
    refresh_s: float = 2.0  # a worker reads each counter at most this often
    min_events: float = 2.0  # decayed interest events a product needs to be trending
    depth: int = 500  # products read per counter


class Trending:
    def __init__(self, realtime: Realtime, config: TrendingConfig | None = None) -> None:
        self.realtime = realtime
        self.config = config or TrendingConfig()
        self._cache: dict[str | None, tuple[float, Rows | None]] = {}
        self._lock = threading.Lock()

    def rows(self, category: str | None) -> Rows | None:
        """(product id, events now), most first; None when the feature store is unavailable."""
        now = time.monotonic()
        hit = self._cache.get(category)
        if hit is not None and now - hit[0] < self.config.refresh_s:
            return hit[1]
        raw = self.realtime.trending(category, self.config.depth)
        rows = None if raw is None else self._counted(raw)
        with self._lock:
            if len(self._cache) > 4096:  # many categories: start over rather than grow
                self._cache.clear()
            self._cache[category] = (now, rows)
        return rows

    def source(self, category: str | None) -> Rows:
        """What the fallback uses: the rows, or nothing when unavailable."""
        return self.rows(category) or []

    def _counted(self, raw: Rows) -> Rows:
        today = decay_factor(time.time())
        floor = self.config.min_events
        return [(p, score / today) for p, score in raw if score / today >= floor]

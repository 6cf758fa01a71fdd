"""Token-bucket rate limits: a caller (a token, later a client address) may make ``rate``
calls per second on average and ``burst`` at once; past that, calls are refused with the
time after which one would be allowed.

Buckets live in each server process: with N workers a caller that spreads its connections
over all of them can reach N x rate (documented in docs/api.md). Refusing early, before any
work, is what keeps an abusive or runaway client from starving the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    rate: float  # calls per second, > 0
    burst: float  # bucket size, >= 1

    @classmethod
    def parse(cls, text: str, source: str) -> Limit | None:
        """ "100" or "100/s" or "100/s:300" (rate, optional burst; default 2 x rate); "0"
        means no limit."""
        rate_text, _, burst_text = text.strip().partition(":")
        rate_text = rate_text.removesuffix("/s").strip()
        try:
            rate = float(rate_text)
            burst = float(burst_text) if burst_text.strip() else max(2 * rate, 1.0)
        except ValueError:
            raise ValueError(
                f"{source}={text!r}: expected RATE[/s][:BURST], e.g. 100/s:300"
            ) from None
        if rate == 0:
            return None
        if not (rate > 0 and burst >= 1) or rate == float("inf"):
            raise ValueError(f"{source}={text!r}: rate must be > 0 and burst >= 1")
        return cls(rate, burst)


class RateLimiter:
    """Buckets by key, created on first use; a thread-safe ``acquire`` per call."""

    def __init__(
        self, limit: Limit, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """0 when the call may go ahead (and is counted), else the seconds to wait."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.limit.burst, now))
            tokens = min(self.limit.burst, tokens + (now - last) * self.limit.rate)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            # Checked whenever a key is added, allowed or not: a stream of new keys that each
            # call once would otherwise grow the table without bound.
            if len(self._buckets) > self._max_keys:  # full buckets carry no state
                self._forget_full(now)
            return 0.0 if allowed else (1.0 - tokens) / self.limit.rate

    def _forget_full(self, now: float) -> None:
        rate, burst = self.limit.rate, self.limit.burst
        self._buckets = {
            k: (t, last)
            for k, (t, last) in self._buckets.items()
            if t + (now - last) * rate < burst
        }

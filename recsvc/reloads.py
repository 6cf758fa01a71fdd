"""Reloads that reach every worker of every replica: announce after a local reload, and a
poller thread per worker that repeats the reloads other workers announced.

The signals live in Redis (feature_store.reload_signals). A handler is registered per topic
(``on``); the poller calls it with the announced payload when the topic's sequence number
grows. A worker does not repeat its own announcement. Without a feature store nothing is
announced or polled: the reload stays on the worker that answered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from feature_store.reload_signals import announce, signals
from feature_store.store import FeatureStore
from formats.errors import Unavailable

log = logging.getLogger(__name__)
POLL_S = 1.0  # how often each worker looks: a reload reaches all within about this long
Handler = Callable[[dict[str, Any]], object]


class ReloadSignals:
    def __init__(self, store: FeatureStore | None, interval: float = POLL_S) -> None:
        self.store = store
        self.interval = interval
        self._handlers: dict[str, Handler] = {}
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on(self, topic: str, handler: Handler) -> None:
        """Call ``handler(payload)`` when another worker announces a reload of ``topic``."""
        self._handlers[topic] = handler

    def announce(self, topic: str, payload: dict[str, Any]) -> None:
        """Tell the other workers and replicas; Unavailable when Redis cannot carry it."""
        if self.store is None:
            return
        try:
            seq = announce(self.store, topic, payload)
        except RedisError as exc:
            raise Unavailable(
                f"reloaded on this worker, but could not tell the others ({exc}); "
                "retry the call (a reload is idempotent)"
            ) from None
        with self._lock:
            self._seen[topic] = max(seq, self._seen.get(topic, 0))

    def start(self) -> None:
        if self.store is None:
            return
        try:  # what was announced before this worker started is already loaded
            self._seen = {t: s.seq for t, s in signals(self.store).items()}
        except RedisError as exc:
            log.warning("reload signals unavailable at start (%s); polling anyway", exc)
        self._thread = threading.Thread(target=self._loop, name="reload-signals", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def poll(self) -> list[str]:
        """Run the handlers of topics announced since the last poll; returns those topics."""
        assert self.store is not None
        fired = []
        for topic, signal in signals(self.store).items():
            with self._lock:
                seen = self._seen.get(topic, 0)
                self._seen[topic] = signal.seq
            # Lower than seen: Redis lost its data and counts again; adopt, don't repeat.
            if signal.seq <= seen:
                continue
            handler = self._handlers.get(topic)
            if handler is None:
                continue
            log.info("reload %s announced by %s: %s", topic, signal.origin, signal.payload)
            try:
                handler(signal.payload)
            except Exception:  # one bad reload must not stop the poller
                log.exception("reload of %s announced by %s failed", topic, signal.origin)
            fired.append(topic)
        return fired

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except RedisError as exc:
                log.debug("reload signals unavailable: %s", exc)

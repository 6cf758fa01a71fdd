"""Health of the services that cannot answer without the feature store.

Recommendations degrade to the bundle alone when Redis is down, so Recommender stays
SERVING; but TrackEvents cannot store an event and the Privacy calls cannot reach what they
erase or export. A load balancer or client checking ``recsvc.v1.Events`` therefore sees
NOT_SERVING while Redis does not answer, and SERVING again within a second of its return.
"""

from __future__ import annotations

import logging
import threading

from grpc_health.v1 import health, health_pb2
from redis.exceptions import RedisError

from feature_store.store import FeatureStore

log = logging.getLogger(__name__)
STORE_SERVICES = ("recsvc.v1.Events", "recsvc.v1.Privacy")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class StoreHealth:
    def __init__(
        self,
        servicer: health.HealthServicer,
        store: FeatureStore | None,
        interval_s: float = 1.0,
    ) -> None:
        self.servicer = servicer
        self.store = store
        self.interval_s = interval_s
        self.healthy: bool | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Ping the writer (the client events go through) and publish the result."""
        ok = False
        if self.store is not None:
            try:
                ok = bool(self.store.writer.ping())
            except RedisError:
                ok = False
        if ok != self.healthy:
            if self.healthy is not None:
                log.warning("feature store %s", "reachable again" if ok else "unreachable")
            self.healthy = ok
            for name in STORE_SERVICES:
                self.servicer.set(name, SERVING if ok else NOT_SERVING)
        return ok

    def start(self) -> None:
        self.check()

        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self.check()

        self._thread = threading.Thread(target=loop, name="store-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

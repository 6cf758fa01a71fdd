# mypy: disable-error-code="no-untyped-call"
"""Client traffic for tests that break things under load: events built by hand, the event
stream read back, reader threads that must never fail, and a tracker that retries each batch
of events until it is answered and records what was acknowledged.

The generated stubs (recsvc.v1.*_pb2_grpc) are unannotated, hence the mypy line above.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import redis
from grpc_helpers import EVENTS, REC, Metadata, new_id

from feature_store.keys import Keys
from formats.events import Event, decode
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc

# A server that is restarted on the same port is found again within a fraction of a second
# (gRPC's default reconnect backoff grows to minutes).
FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)


def pb_event(
    customer: str,
    type: pb.EventType,
    product_id: str = "",
    ts_ms: int | None = None,
    event_id: str = "",
    **fields: Any,
) -> pb.Event:
    event = pb.Event(
        event_id=event_id or new_id(),
        customer_id=customer,
        type=type,
        product_id=product_id,
        **fields,
    )
    if ts_ms is not None:
        event.timestamp.FromMilliseconds(ts_ms)
    return event


def stream(url: str, namespace: str) -> list[Event]:
    """Every event in the stream of ``namespace``, oldest first."""
    client: Any = redis.Redis.from_url(url)  # typed loosely, as feature_store.connection
    try:
        return [decode(f[b"e"]) for _, f in client.xrange(Keys(namespace).stream)]
    finally:
        client.close()


class Readers:
    """Client threads calling RecommendProducts, SimilarProducts and RankProducts in a loop;
    every call must succeed, Redis or not. ``paused()`` holds them with no call in flight."""

    def __init__(self, port: int, customer: str, threads: int = 2) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = pb_grpc.RecommenderStub(self.channel)
        self.customer = customer
        self.stopping = threading.Event()
        self.calls = 0
        self.in_flight = 0
        self._paused = False
        self.lock = threading.Lock()
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        calls: list[Callable[[], Any]] = [
            lambda: self.stub.RecommendProducts(
                pb.RecommendProductsRequest(customer_id=self.customer, limit=10),
                metadata=REC,
                timeout=10,
            ),
            lambda: self.stub.SimilarProducts(
                pb.SimilarProductsRequest(product_id="P000001", limit=10),
                metadata=REC,
                timeout=10,
            ),
            lambda: self.stub.RankProducts(
                pb.RankProductsRequest(customer_id=self.customer, product_ids=["P000001"]),
                metadata=REC,
                timeout=10,
            ),
        ]
        n = 0
        while not self.stopping.is_set():
            with self.lock:
                go = not self._paused
                self.in_flight += go
            if not go:
                time.sleep(0.002)
                continue
            try:
                reply = calls[n % len(calls)]()
                if not reply.items:
                    self.failures.append(f"no items from call {n}")
            except grpc.RpcError as exc:
                self.failures.append(repr(exc))
            n += 1
            with self.lock:
                self.in_flight -= 1
                self.calls += 1

    def wait_for_calls(self, n: int, timeout: float = 20.0) -> None:
        target = self.calls + n
        deadline = time.monotonic() + timeout
        while self.calls < target:
            assert time.monotonic() < deadline, "reader threads stalled"
            time.sleep(0.005)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No reader call in flight inside (one that ran across Redis dying could end the
        outage it started: see test_realtime's in-flight test)."""
        with self.lock:
            self._paused = True
        deadline = time.monotonic() + 20  # a call gives up after 10 s
        while self.in_flight:
            assert time.monotonic() < deadline, f"{self.in_flight} reader calls never returned"
            time.sleep(0.002)
        try:
            yield
        finally:
            with self.lock:
                self._paused = False

    def __enter__(self) -> Readers:
        for t in self.threads:
            t.start()
        self.wait_for_calls(6)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=15)
        self.channel.close()
        assert not any(t.is_alive() for t in self.threads), "reader threads did not stop"


class Tracker:
    """A client thread sending batches of unique events, retrying a batch (same event ids)
    until the server answers, as clients are told to. Records every acknowledged event_id."""

    def __init__(
        self,
        port: int,
        batch: int = 10,
        metadata: Metadata = EVENTS,
        patience: float = 60.0,
        prefix: str = "C-tracked",
    ) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=FAST_RECONNECT)
        self.stub = pb_grpc.EventsStub(self.channel)
        self.batch = batch
        self.metadata = metadata
        self.patience = patience  # seconds one batch may stay unanswered
        self.prefix = prefix
        self.stopping = threading.Event()
        self.acknowledged: list[str] = []
        self.statuses: Counter[str] = Counter()
        self.unavailable = 0
        self.batches = 0
        self.gave_up = ""  # why the thread stopped retrying, if it did
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        n = 0
        while not self.stopping.is_set():
            customer = f"{self.prefix}-{n % 7}"
            events = [
                pb_event(customer, pb.EVENT_TYPE_VIEW, f"P{(n * self.batch + i) % 200:06d}")
                for i in range(self.batch)
            ]
            request = pb.TrackEventsRequest(events=events)
            deadline = time.monotonic() + self.patience  # the outage lasts seconds
            while True:  # the same batch until it is answered
                try:
                    reply = self.stub.TrackEvents(request, metadata=self.metadata, timeout=10)
                    break
                except grpc.RpcError as exc:
                    assert isinstance(exc, grpc.Call)
                    self.statuses[exc.code().name] += 1
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        self.unavailable += 1
                    if time.monotonic() > deadline:
                        self.gave_up = (
                            f"batch {n} unanswered for {self.patience:.0f} s: {self.statuses}"
                        )
                        return
                    time.sleep(0.01)
            for r in reply.results:
                self.statuses[pb.EventStatus.Name(r.status)] += 1
                if r.status in (pb.EVENT_STATUS_ACCEPTED, pb.EVENT_STATUS_DUPLICATE):
                    self.acknowledged.append(r.event_id)
            self.batches += 1
            n += 1

    def wait_for_batches(self, n: int, timeout: float = 20.0) -> None:
        target = self.batches + n
        deadline = time.monotonic() + timeout
        while self.batches < target:
            assert not self.gave_up, self.gave_up
            assert time.monotonic() < deadline, f"tracker stalled: {self.statuses}"
            time.sleep(0.005)

    def __enter__(self) -> Tracker:
        self.thread.start()
        self.wait_for_batches(2)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        self.channel.close()
        # Its acknowledged events are final only once it stopped.
        assert not self.thread.is_alive(), f"tracker did not stop: {self.statuses}"
        assert not self.gave_up, self.gave_up

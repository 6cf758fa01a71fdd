"""The load generator of the events benchmark: a process with one asyncio event loop
(grpc.aio), ``channels`` TCP connections and ``concurrency`` closed-loop callers, each sending
TrackEvents batches.

Every event_id must be new (a replayed id is answered "duplicate", not stored again), so
unlike bench.serve_load requests cannot be cycled: the process first builds a pool of distinct
serialized batches (``Prepare``, not timed), then sends each batch once (``Run``). Should the
pool run dry, further batches are built during the run and counted in the result.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import grpc
import numpy as np

from formats.events import Event
from recsvc.convert import EVENT_TYPE_CODES
from recsvc.v1 import recommender_pb2 as pb

TRACK = "/recsvc.v1.Events/TrackEvents"
EVENT_CODES = EVENT_TYPE_CODES
# What a shop's event forwarder sends: mostly views and clicks, some carts and purchases.
TYPE_SHARES: tuple[tuple[str, float], ...] = (
    ("view", 0.60),
    ("click", 0.25),
    ("add_to_cart", 0.10),
    ("purchase", 0.05),
)


@dataclass(frozen=True)
class EventMix:
    """Where random events come from: customers uniformly, products by popularity."""

    customers: list[str]
    products: list[str]
    cum_weights: list[float]  # cumulative product popularity (random.choices cum_weights)
    prices: list[float]  # per product, for purchase amounts
    batch: int = 100


class EventMaker:
    """Random realistic events with unique event_ids (uuid4 strings)."""

    def __init__(self, mix: EventMix, seed: int) -> None:
        self.mix = mix
        self.rng = random.Random(seed)
        self.types = [t for t, _ in TYPE_SHARES]
        self.type_cum = list(np.cumsum([s for _, s in TYPE_SHARES]))

    def events(self, n: int, customer: str | None = None, ts_ms: int = 0) -> list[Event]:
        """``n`` events (of one customer when given), stamped ``ts_ms`` (0: now)."""
        rng, mix = self.rng, self.mix
        now = ts_ms or int(time.time() * 1000)
        kinds = rng.choices(self.types, cum_weights=self.type_cum, k=n)
        products = rng.choices(range(len(mix.products)), cum_weights=mix.cum_weights, k=n)
        out = []
        for kind, p in zip(kinds, products, strict=True):
            quantity = float(rng.randint(1, 3)) if kind in ("add_to_cart", "purchase") else 0.0
            amount = round(quantity * mix.prices[p], 2) if kind == "purchase" else 0.0
            out.append(
                Event(
                    event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    customer_id=customer or rng.choice(mix.customers),
                    type=kind,
                    product_id=mix.products[p],
                    ts_ms=now,
                    quantity=quantity,
                    amount=amount,
                )
            )
        return out

    def request(self) -> bytes:
        return serialize(self.events(self.mix.batch))


def serialize(events: list[Event]) -> bytes:
    """A serialized TrackEventsRequest (what recsvc.client.Client.track sends)."""
    request = pb.TrackEventsRequest()
    for e in events:
        message = request.events.add(
            event_id=e.event_id,
            customer_id=e.customer_id,
            type=EVENT_CODES[e.type],
            product_id=e.product_id,
            quantity=e.quantity,
            amount=e.amount,
        )
        if e.ts_ms:
            message.timestamp.FromMilliseconds(e.ts_ms)
    return request.SerializeToString()


@dataclass(frozen=True)
class Prepare:
    batches: int
    seed: int


@dataclass(frozen=True)
class Run:
    """Send batches from ``start`` (monotonic) until ``start + warmup + seconds``."""

    target: str
    token: str
    concurrency: int
    channels: int
    start: float
    warmup: float
    seconds: float
    timeout: float = 10.0

    @property
    def window(self) -> tuple[float, float]:
        return self.start + self.warmup, self.start + self.warmup + self.seconds


@dataclass
class RunResult:
    latencies_ns: np.ndarray  # calls that completed inside the window
    window_events: int  # events acknowledged (accepted) by those calls
    acknowledged: int  # events accepted by every answered call (warm-up and tail too)
    calls: int  # every answered call
    duplicates: int
    rejected: int
    errors: dict[str, int] = field(default_factory=dict)
    built_during_run: int = 0  # batches built after the pool ran dry


async def _run(run: Run, pool: deque[bytes], maker: EventMaker) -> RunResult:
    # A local subchannel pool gives every channel its own TCP connection, so the kernel can
    # spread them over the server's SO_REUSEPORT workers.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(run.target, options=options) for _ in range(run.channels)]
    metadata = (("authorization", f"Bearer {run.token}"),)
    latencies: list[int] = []
    errors: dict[str, int] = {}
    totals = {"window": 0, "acked": 0, "calls": 0, "dup": 0, "rejected": 0, "built": 0}
    begin, end = run.window
    try:
        await asyncio.wait_for(
            asyncio.gather(*(c.channel_ready() for c in channels)), timeout=run.timeout
        )
        calls = [
            c.unary_unary(
                TRACK,
                request_serializer=None,  # pre-serialized
                response_deserializer=pb.TrackEventsResponse.FromString,
            )
            for c in channels
        ]
        await asyncio.sleep(max(0.0, run.start - time.monotonic()))

        async def caller(i: int) -> None:
            call = calls[i % len(calls)]
            while time.monotonic() < end:
                if pool:
                    request = pool.popleft()
                else:
                    request = maker.request()
                    totals["built"] += 1
                t0 = time.perf_counter_ns()
                try:
                    reply = await call(request, metadata=metadata, timeout=run.timeout)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                    await asyncio.sleep(0.001)
                    continue
                t1 = time.perf_counter_ns()
                totals["calls"] += 1
                totals["acked"] += reply.accepted
                totals["dup"] += reply.duplicates
                totals["rejected"] += reply.rejected
                if begin <= time.monotonic() < end:
                    latencies.append(t1 - t0)
                    totals["window"] += reply.accepted

        await asyncio.gather(*(caller(i) for i in range(run.concurrency)))
    finally:
        await asyncio.gather(*(c.close(None) for c in channels))
    return RunResult(
        np.asarray(latencies, dtype=np.int64),
        totals["window"],
        totals["acked"],
        totals["calls"],
        totals["dup"],
        totals["rejected"],
        errors,
        totals["built"],
    )


def serve_events(conn: Connection, mix: EventMix) -> None:
    """Process entry point. Prepare: build that many batches, answer how many are ready;
    Run: send them, answer a RunResult (or the exception); None ends the process."""
    pool: deque[bytes] = deque()
    maker = EventMaker(mix, 0)
    while True:
        job = conn.recv()
        if job is None:
            return
        try:
            if isinstance(job, Prepare):
                maker = EventMaker(mix, job.seed)
                pool = deque(maker.request() for _ in range(job.batches))
                conn.send(len(pool))
            else:
                conn.send(asyncio.run(_run(job, pool, maker)))
        except Exception as exc:  # reported by the parent, which owns the run
            conn.send(exc)

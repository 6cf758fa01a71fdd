"""Load generators for gRPC benchmarks: processes with one asyncio event loop (grpc.aio)
each, ``channels`` TCP connections and ``concurrency`` closed-loop callers (or, for a phase
over HTTP/JSON, one keep-alive connection per caller: bench.harness.http_load); and the random
TrackEvents traffic of the events benchmark's parts.

Requests are sent pre-serialized and responses are not parsed (no serializers on the
multi-callable), so the client spends its CPU on gRPC itself. Callers of all processes follow
one schedule on the system-wide monotonic clock, so the parent can sample CPU time and server
metrics at the window boundaries.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import grpc
import numpy as np
import psutil

from bench.harness.http_load import HttpConnection, HttpFailed, build_requests
from formats.events import Event
from recsvc.convert import EVENT_TYPE_CODES
from recsvc.v1 import recommender_pb2 as pb

Call = grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]


@dataclass(frozen=True)
class Phase:
    """One RPC, measured from ``start + warmup`` to ``start + warmup + seconds`` (monotonic)."""

    name: str
    method: str  # "/package.Service/Method"
    requests: list[bytes]  # serialized messages; JSON bodies when ``http``
    start: float
    warmup: float
    seconds: float
    http: bool = False  # POST the JSON bodies to the HTTP port instead of calling over gRPC

    @property
    def window(self) -> tuple[float, float]:
        return self.start + self.warmup, self.start + self.warmup + self.seconds


@dataclass(frozen=True)
class Job:
    target: str
    token: str
    concurrency: int
    channels: int
    phases: list[Phase]
    offset: int = 0  # where this process starts in each request list
    timeout: float = 10.0
    http_target: str = ""  # "host:port" of the HTTP port, for phases over HTTP


@dataclass
class PhaseResult:
    name: str
    latencies_ns: np.ndarray  # of the calls that completed inside the window
    errors: dict[str, int] = field(default_factory=dict)
    first_response: bytes = b""


async def _run(job: Job) -> list[PhaseResult]:
    # A local subchannel pool gives every channel its own TCP connection, so the kernel can
    # spread them over the server's SO_REUSEPORT workers.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(job.target, options=options) for _ in range(job.channels)]
    metadata = (("authorization", f"Bearer {job.token}"),)
    try:
        await asyncio.wait_for(
            asyncio.gather(*(c.channel_ready() for c in channels)), timeout=job.timeout
        )
        results = []
        for phase in job.phases:
            if phase.http:
                results.append(await _http_phase(job, phase))
                continue
            # No serializers: bytes go out as they are and come back unparsed.
            calls: list[Call] = [
                c.unary_unary(phase.method, request_serializer=None, response_deserializer=None)
                for c in channels
            ]

            def send(i: int, request: bytes, calls: list[Call] = calls) -> Awaitable[bytes]:
                return calls[i % len(calls)](request, metadata=metadata, timeout=job.timeout)

            results.append(await _phase(job, phase, phase.requests, send))
        return results
    finally:
        await asyncio.gather(*(c.close(None) for c in channels))


async def _http_phase(job: Job, phase: Phase) -> PhaseResult:
    host, _, port = job.http_target.rpartition(":")
    requests = build_requests(job.http_target, phase.method, job.token, phase.requests)
    connections = [HttpConnection(host, int(port)) for _ in range(job.concurrency)]
    try:
        return await _phase(job, phase, requests, lambda i, r: connections[i].call(r))
    finally:
        for c in connections:
            c.close()


async def _phase(
    job: Job,
    phase: Phase,
    requests: list[bytes],
    send: Callable[[int, bytes], Awaitable[bytes]],
) -> PhaseResult:
    """``job.concurrency`` closed-loop callers; caller ``i`` calls ``send(i, request)``."""
    begin, end = phase.window
    n = len(requests)
    latencies: list[int] = []
    errors: dict[str, int] = {}
    first: list[bytes] = []
    await asyncio.sleep(max(0.0, phase.start - time.monotonic()))

    async def caller(i: int) -> None:
        j = job.offset + i
        while True:
            now = time.monotonic()
            if now >= end:
                return
            t0 = time.perf_counter_ns()
            try:
                reply = await send(i, requests[j % n])
            except (grpc.aio.AioRpcError, HttpFailed) as exc:
                code = exc.status if isinstance(exc, HttpFailed) else exc.code().name
                errors[code] = errors.get(code, 0) + 1
                await asyncio.sleep(0.001)
                continue
            t1 = time.perf_counter_ns()
            if not first:
                first.append(reply)
            done = time.monotonic()
            if begin <= done < end:
                latencies.append(t1 - t0)
            j += job.concurrency

    await asyncio.gather(*(caller(i) for i in range(job.concurrency)))
    return PhaseResult(
        phase.name,
        np.asarray(latencies, dtype=np.int64),
        errors,
        first[0] if first else b"",
    )


def serve_jobs(conn: Connection) -> None:
    """Process entry point: run each Job received on ``conn``, send back its results;
    None ends the process."""
    while True:
        job = conn.recv()
        if job is None:
            return
        try:
            conn.send(asyncio.run(_run(job)))
        except Exception as exc:  # reported by the parent, which owns the run
            conn.send(exc)


class LoadGenerators:
    """``n`` load generator processes, each running ``target(pipe, *args)`` (by default
    serve_jobs); the parent sends each a job on its pipe and receives the results."""

    def __init__(
        self,
        n: int,
        target: Callable[..., None] = serve_jobs,
        args: tuple[Any, ...] = (),
        name: str = "bench-serve-load",
    ) -> None:
        ctx = get_context("spawn")  # a fresh interpreter: no gRPC state inherited
        self.pipes: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child, *args), name=name)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        self.ps = [psutil.Process(p.pid) for p in self.procs if p.pid is not None]

    def ask(self, pipes: list[Connection], jobs: list[Any]) -> list[Any]:
        """Send each pipe its job, wait for every answer; a failure ends the benchmark."""
        for pipe, job in zip(pipes, jobs, strict=True):
            pipe.send(job)
        replies = [pipe.recv() for pipe in pipes]
        for r in replies:
            if isinstance(r, Exception):
                raise SystemExit(f"load generator failed: {r!r}")
        return replies

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for proc in self.procs:
            proc.join(timeout=10)


# -- TrackEvents traffic -----------------------------------------------------------------------

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
            type=EVENT_TYPE_CODES[e.type],
            product_id=e.product_id,
            quantity=e.quantity,
            amount=e.amount,
        )
        if e.ts_ms:
            message.timestamp.FromMilliseconds(e.ts_ms)
    return request.SerializeToString()

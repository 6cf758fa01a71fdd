"""Load for the overload and soak tests: a mix of RecommendProducts and TrackEvents sent with
grpc.aio from this process, closed-loop (as fast as answers come) or paced (a fixed rate,
whatever the answers do), and the memory and open files of server processes sampled over time.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import grpc
import numpy as np
import psutil
from grpc_helpers import EVENTS, REC

from recsvc.v1 import recommender_pb2 as pb

RECOMMEND = "/recsvc.v1.Recommender/RecommendProducts"
TRACK = "/recsvc.v1.Events/TrackEvents"
TRACK_EVERY = 5  # one call in five is a TrackEvents of EVENTS_PER_CALL events
EVENTS_PER_CALL = 5


def recommend_request(n: int) -> bytes:
    customer = f"C{n % 2000 + 1:07d}"  # the served world's customers
    return pb.RecommendProductsRequest(customer_id=customer, limit=10).SerializeToString()


def track_request(n: int) -> bytes:
    events = [
        pb.Event(
            event_id=uuid.uuid4().hex,
            customer_id=f"C-load-{n % 500}",
            type=pb.EVENT_TYPE_VIEW,
            product_id=f"P{(n * EVENTS_PER_CALL + i) % 200 + 1:06d}",
        )
        for i in range(EVENTS_PER_CALL)
    ]
    return pb.TrackEventsRequest(events=events).SerializeToString()


@dataclass
class Outcome:
    """What the clients saw: status counts and the latency (s) of every answered call."""

    codes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def calls(self) -> int:
        return sum(self.codes.values())

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    def summary(self) -> str:
        slowest = max(self.latencies, default=0.0)
        return (
            f"{self.calls} calls in {self.seconds:.0f} s ({self.rate:.0f}/s), {dict(self.codes)}, "
            f"latency p50 {self.percentile(50) * 1000:.1f} ms, "
            f"p99 {self.percentile(99) * 1000:.1f} ms, max {slowest * 1000:.0f} ms"
        )


class Mix:
    """Calls of the mix on ``channels`` aio channels to 127.0.0.1:``port``."""

    def __init__(self, port: int, channels: int = 4, timeout: float = 10.0) -> None:
        self.port = port
        self.channels_wanted = channels
        self.timeout = timeout
        self.counter = itertools.count()
        self.outcome = Outcome()

    async def __aenter__(self) -> Mix:
        # Separate TCP connections (a local subchannel pool each): spread over the workers.
        options = [("grpc.use_local_subchannel_pool", 1)]
        self.channels = [
            grpc.aio.insecure_channel(f"127.0.0.1:{self.port}", options=options)
            for _ in range(self.channels_wanted)
        ]
        self.calls = [
            (
                c.unary_unary(RECOMMEND, request_serializer=None, response_deserializer=None),
                c.unary_unary(TRACK, request_serializer=None, response_deserializer=None),
            )
            for c in self.channels
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(c.close(None) for c in self.channels))

    async def one(self) -> None:
        n = next(self.counter)
        recommend, track = self.calls[n % len(self.calls)]
        if n % TRACK_EVERY == 0:
            method, payload, metadata = track, track_request(n), EVENTS
        else:
            method, payload, metadata = recommend, recommend_request(n), REC
        began = time.perf_counter()
        try:
            await method(payload, metadata=metadata, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            self.outcome.codes[exc.code().name] += 1
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                self.outcome.latencies.append(time.perf_counter() - began)
            return
        self.outcome.codes["OK"] += 1
        self.outcome.latencies.append(time.perf_counter() - began)

    async def closed_loop(self, callers: int, seconds: float) -> Outcome:
        """``callers`` each sending the next call when the last is answered."""
        self.outcome = Outcome()
        end = time.monotonic() + seconds
        began = time.monotonic()

        async def caller() -> None:
            while time.monotonic() < end:
                await self.one()

        await asyncio.gather(*(caller() for _ in range(callers)))
        self.outcome.seconds = time.monotonic() - began
        return self.outcome

    async def paced(self, rate: float, seconds: float, max_in_flight: int = 256) -> Outcome:
        """Calls started at ``rate`` per second for ``seconds``, answered or not (at most
        ``max_in_flight`` outstanding: past that the client itself is overloaded and a
        skipped start is counted as CLIENT_BEHIND)."""
        self.outcome = Outcome()
        tasks: set[asyncio.Task[None]] = set()
        began = time.monotonic()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
            if len(tasks) >= max_in_flight:
                self.outcome.codes["CLIENT_BEHIND"] += 1
                continue
            task = asyncio.create_task(self.one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        self.outcome.seconds = time.monotonic() - began
        return self.outcome


@dataclass
class Samples:
    """RSS (bytes) and open file descriptors per process, sampled every ``interval`` s."""

    times: list[float] = field(default_factory=list)
    rss: dict[str, list[float]] = field(default_factory=dict)
    fds: dict[str, list[float]] = field(default_factory=dict)


class Sampler:
    """A thread sampling ``procs`` (name -> process) until stopped."""

    def __init__(self, procs: dict[str, psutil.Process], interval: float = 5.0) -> None:
        self.procs = procs
        self.interval = interval
        self.samples = Samples(rss={n: [] for n in procs}, fds={n: [] for n in procs})
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self.began = time.monotonic()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.samples.times.append(time.monotonic() - self.began)
            for name, proc in self.procs.items():
                with proc.oneshot():
                    self.samples.rss[name].append(float(proc.memory_info().rss))
                    self.samples.fds[name].append(float(proc.num_fds()))
            self.stopping.wait(self.interval)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)


def slope(times: list[float], values: list[float]) -> float:
    """Least-squares growth per second of ``values`` over the second half of the run."""
    half = len(times) // 2
    t, v = np.asarray(times[half:]), np.asarray(values[half:])
    return float(np.polyfit(t, v, 1)[0]) if len(t) >= 3 else 0.0

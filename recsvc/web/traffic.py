"""Live traffic for the dashboard from the server's own Prometheus metrics (recsvc.metrics):
calls/s, p50/p99, errors per RPC, fallbacks and degraded calls.

The metrics are cumulative, so a sampler thread snapshots them every few seconds and rates are
differences between snapshots. With several workers every snapshot is the sum over all of them:
each worker reads the multi-process directory the parent serves /metrics from (the same
numbers in every worker, whichever one the dashboard's request reaches).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Metric
from prometheus_client.multiprocess import MultiProcessCollector

RPC_SECONDS = "recsvc_rpc_duration_seconds"
FALLBACKS = "recsvc_fallbacks_total"
DEGRADED = "recsvc_feature_store_degraded_total"
EVENTS = "recsvc_events_total"
ARM_LABEL = "arm"  # metrics per experiment arm carry it ("" outside experiments)


@dataclass(frozen=True)
class RpcCounts:
    calls: float
    errors: float  # answered with another code than OK
    buckets: tuple[float, ...]  # cumulative calls per upper bound of Snapshot.bounds


@dataclass(frozen=True)
class ArmSample:
    metric: str
    arm: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Snapshot:
    at: float  # Unix seconds
    bounds: tuple[float, ...] = ()  # histogram upper bounds, +inf last
    rpc: dict[str, RpcCounts] = field(default_factory=dict)
    fallbacks: dict[str, float] = field(default_factory=dict)
    degraded: float = 0.0
    events: dict[str, float] = field(default_factory=dict)
    arms: tuple[ArmSample, ...] = ()


def _families() -> Iterable[Metric]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry.collect()
    return REGISTRY.collect()


def collect(families: Iterable[Metric] | None = None, now: float | None = None) -> Snapshot:
    """One snapshot of the metrics that matter here."""
    calls: dict[str, float] = {}
    errors: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    fallbacks: dict[str, float] = {}
    events: dict[str, float] = {}
    degraded = 0.0
    arms: list[ArmSample] = []
    for family in _families() if families is None else families:
        for s in family.samples:
            if s.labels.get(ARM_LABEL) and not s.name.endswith(("_created", "_bucket")):
                others = {k: v for k, v in s.labels.items() if k != ARM_LABEL}
                arms.append(ArmSample(s.name, s.labels[ARM_LABEL], others, s.value))
            if family.name == RPC_SECONDS:
                method = s.labels.get("method", "")
                if s.name.endswith("_count"):
                    calls[method] = calls.get(method, 0.0) + s.value
                    if s.labels.get("code") != "OK":
                        errors[method] = errors.get(method, 0.0) + s.value
                elif s.name.endswith("_bucket"):
                    per = buckets.setdefault(method, {})
                    le = float(s.labels["le"])
                    per[le] = per.get(le, 0.0) + s.value  # summed over codes
            elif family.name == FALLBACKS.removesuffix("_total") and s.name == FALLBACKS:
                kind = s.labels.get("kind", "")
                fallbacks[kind] = fallbacks.get(kind, 0.0) + s.value
            elif family.name == DEGRADED.removesuffix("_total") and s.name == DEGRADED:
                degraded += s.value
            elif family.name == EVENTS.removesuffix("_total") and s.name == EVENTS:
                status = s.labels.get("status", "")
                events[status] = events.get(status, 0.0) + s.value
    bounds = tuple(sorted({le for per in buckets.values() for le in per}))
    rpc = {
        m: RpcCounts(
            calls[m], errors.get(m, 0.0), tuple(buckets.get(m, {}).get(b, 0.0) for b in bounds)
        )
        for m in calls
    }
    return Snapshot(
        time.time() if now is None else now,
        bounds,
        rpc,
        fallbacks,
        degraded,
        events,
        tuple(arms),
    )


def quantile(q: float, bounds: tuple[float, ...], cumulative: tuple[float, ...]) -> float | None:
    """The q-quantile of a histogram (cumulative counts per upper bound), interpolated within
    its bucket as Prometheus' histogram_quantile does; None without observations."""
    if not cumulative or cumulative[-1] <= 0:
        return None
    rank = q * cumulative[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, cumulative, strict=True):
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower  # past the last finite bucket: its bound is all we know
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _window(a: Snapshot, b: Snapshot, method: str) -> dict[str, Any]:
    """Rates and latency of one RPC between two snapshots."""
    seconds = max(b.at - a.at, 1e-9)
    new, old = b.rpc.get(method), a.rpc.get(method)
    if new is None:
        return {"calls_per_s": 0.0, "errors_per_s": 0.0, "p50_ms": None, "p99_ms": None}
    base = old or RpcCounts(0.0, 0.0, tuple(0.0 for _ in b.bounds))
    if len(base.buckets) != len(new.buckets):  # a bucket layout change: count from zero
        base = RpcCounts(base.calls, base.errors, tuple(0.0 for _ in b.bounds))
    delta = tuple(max(x - y, 0.0) for x, y in zip(new.buckets, base.buckets, strict=True))
    p50, p99 = quantile(0.5, b.bounds, delta), quantile(0.99, b.bounds, delta)
    return {
        "calls_per_s": max(new.calls - base.calls, 0.0) / seconds,
        "errors_per_s": max(new.errors - base.errors, 0.0) / seconds,
        "p50_ms": None if p50 is None else p50 * 1e3,
        "p99_ms": None if p99 is None else p99 * 1e3,
    }


def _rate(a: dict[str, float], b: dict[str, float], seconds: float) -> dict[str, float]:
    return {k: max(v - a.get(k, 0.0), 0.0) / seconds for k, v in b.items()}


def report(samples: list[Snapshot], table_window: float = 60.0) -> dict[str, Any]:
    """The dashboard's traffic view of successive snapshots (oldest first): a series per
    RPC, and a table over the last ``table_window`` seconds with totals since start."""
    if not samples:
        return {"series": {"t": []}, "table": [], "window_s": 0.0}
    last = samples[-1]
    methods = sorted(last.rpc)
    pairs = list(itertools.pairwise(samples))
    series: dict[str, Any] = {
        "t": [b.at for _, b in pairs],
        "rpc": {m: [_window(a, b, m) for a, b in pairs] for m in methods},
        "fallbacks_per_s": [_rate(a.fallbacks, b.fallbacks, b.at - a.at) for a, b in pairs],
        "degraded_per_s": [max(b.degraded - a.degraded, 0.0) / (b.at - a.at) for a, b in pairs],
    }
    # The oldest snapshot inside the window; at least the one before the last.
    start = next((s for s in samples[:-1] if last.at - s.at <= table_window), None)
    start = start or (samples[-2] if len(samples) > 1 else last)
    seconds = max(last.at - start.at, 1e-9)
    table = []
    for m in methods:
        row = _window(start, last, m)
        total = last.rpc[m]
        row.update(method=m, calls=total.calls, errors=total.errors)
        table.append(row)
    return {
        "window_s": last.at - start.at,
        "series": series,
        "table": table,
        "fallbacks": {
            "total": last.fallbacks,
            "per_s": _rate(start.fallbacks, last.fallbacks, seconds),
        },
        "degraded": {
            "total": last.degraded,
            "per_s": max(last.degraded - start.degraded, 0.0) / seconds,
            "share_of_calls": _share(last.degraded - start.degraded, start, last),
        },
        "events": {"total": last.events, "per_s": _rate(start.events, last.events, seconds)},
    }


def _share(degraded: float, start: Snapshot, last: Snapshot) -> float | None:
    """Degraded calls as a share of Recommender calls in the window."""
    calls = sum(
        c.calls - (start.rpc[m].calls if m in start.rpc else 0.0)
        for m, c in last.rpc.items()
        if m.startswith("recsvc.v1.Recommender/")
    )
    return degraded / calls if calls > 0 else None


def arms(snapshot: Snapshot) -> list[dict[str, Any]]:
    """Per-arm metric values (experiments), grouped by arm; empty before any exist."""
    return [
        {"arm": a.arm, "metric": a.metric, "labels": a.labels, "value": a.value}
        for a in sorted(snapshot.arms, key=lambda a: (a.arm, a.metric, sorted(a.labels.items())))
    ]


class Sampler:
    """Snapshots every ``interval`` seconds, the last ``keep`` of them, on a daemon thread."""

    def __init__(
        self, interval: float = 5.0, keep: int = 120, source: Callable[[], Snapshot] = collect
    ) -> None:
        self.interval = interval
        self._source = source
        self._samples: deque[Snapshot] = deque(maxlen=keep)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="traffic-sampler", daemon=True)

    def start(self) -> None:
        self._samples.append(self._source())
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._samples.append(self._source())

    def samples(self) -> list[Snapshot]:
        """The kept snapshots and one taken now."""
        return [*self._samples, self._source()]

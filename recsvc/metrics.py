"""Prometheus metrics of the serving process (multi-process safe when
PROMETHEUS_MULTIPROC_DIR is set before this module is imported; see recsvc.server)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import Counter, Gauge, Histogram

from formats.events import Event

RPC_SECONDS = Histogram(
    "recsvc_rpc_duration_seconds",
    "Server-side latency of each RPC, by method and status code (its _count is the call count)",
    ["method", "code"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
FALLBACKS = Counter(
    "recsvc_fallbacks_total",
    "Answers that used the popularity fallback: cold_start (unknown customer) or fill "
    "(personalized results topped up to the requested limit)",
    ["kind"],
)
MODEL_VERSION = Gauge(
    "recsvc_model_version_info",
    "1 for the model version being served",
    ["version"],
    multiprocess_mode="max",
)
DEGRADED = Counter(
    "recsvc_feature_store_degraded_total",
    "Calls answered from the model alone because the feature store (Redis) was down or slow",
)
OUTAGES = Counter("recsvc_feature_store_outages_total", "Times the feature store stopped answering")
EVENTS = Counter("recsvc_events_total", "Tracked events by outcome", ["status"])
RELOADS = Counter("recsvc_model_reloads_total", "Model reload attempts by outcome", ["outcome"])
ATTRIBUTED = Counter(
    "recsvc_recommendation_events_total",
    "Tracked events carrying a recommendation_id: impression (rec_impression), click "
    "(rec_click), purchase (attributed), by the model version and experiment arm behind it",
    ["model_version", "experiment", "arm", "event"],
)
ATTRIBUTED_REVENUE = Counter(
    "recsvc_recommendation_revenue_total",
    "Amount of purchases carrying a recommendation_id, by model version and experiment arm",
    ["model_version", "experiment", "arm"],
)
_ATTRIBUTED_KINDS = {"rec_impression": "impression", "rec_click": "click", "purchase": "purchase"}


def record_reload(outcome: str, version: str, previous: str | None = None) -> None:
    RELOADS.labels(outcome).inc()
    if outcome == "loaded":
        if previous:
            MODEL_VERSION.labels(previous).set(0)
        MODEL_VERSION.labels(version).set(1)


def record_attributed(
    events: Iterable[Event], labels: Callable[[str], tuple[str, str, str] | None]
) -> None:
    """Count newly stored events that carry a recommendation_id; ``labels`` gives its
    (model_version, experiment, arm), or None for an id that is not ours."""
    for e in events:
        kind = _ATTRIBUTED_KINDS.get(e.type)
        found = labels(e.recommendation_id) if kind and e.recommendation_id else None
        if kind is None or found is None:
            continue
        ATTRIBUTED.labels(*found, kind).inc()
        if kind == "purchase" and e.amount:
            ATTRIBUTED_REVENUE.labels(*found).inc(e.amount)

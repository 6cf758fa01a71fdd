"""Prometheus metrics of the serving process (multi-process safe when
PROMETHEUS_MULTIPROC_DIR is set before this module is imported; see recsvc.server)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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


def record_reload(outcome: str, version: str, previous: str | None = None) -> None:
    RELOADS.labels(outcome).inc()
    if outcome == "loaded":
        if previous:
            MODEL_VERSION.labels(previous).set(0)
        MODEL_VERSION.labels(version).set(1)

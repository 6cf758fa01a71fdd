"""The dashboard's JSON and pages on a real server (Redis, loaded features, offers), and the
traffic arithmetic behind it."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest
from grpc_helpers import new_id
from prometheus_client import CollectorRegistry, Counter, Histogram
from web_helpers import PUBLIC_TOKEN, WebServer

from feature_store.bulk import customer_counts
from recsvc.web import traffic
from recsvc.web.dashboard_data import EXPERIMENTS_PENDING

PARTS = ("models", "traffic", "customers", "offers", "experiments")


@pytest.mark.parametrize("part", PARTS)
def test_every_part_needs_an_admin_token(web_server: WebServer, part: str) -> None:
    http = web_server.http
    missing = http.get(f"/dashboard/api/{part}")
    assert missing.status == 401
    assert missing.json()["code"] == "unauthenticated"
    for token in ("rec-token", PUBLIC_TOKEN, "events-token"):
        refused = http.get(f"/dashboard/api/{part}", token=token)
        assert refused.status == 403
        assert "lacks the 'admin' scope needed by the dashboard" in refused.json()["message"]
    answer = http.get(f"/dashboard/api/{part}", token="admin-token")
    assert answer.status == 200
    assert answer.headers["cache-control"] == "no-store"


def test_models_list_the_served_version_with_its_metrics(web_server: WebServer) -> None:
    models = web_server.http.get("/dashboard/api/models", token="admin-token").json()
    assert models["serving"] == models["current"] == web_server.version
    assert models["history"] == [web_server.version]
    (row,) = models["versions"]
    assert row["version"] == web_server.version
    assert row["serving"] and row["current"] and row["published_order"] == 0
    assert row["index_kind"] in ("exact", "hnsw") and 0 < row["index_recall"] <= 1
    assert any(k.startswith("ndcg@") for k in row["metrics"])
    assert "popularity" in row["baselines"]


def test_traffic_counts_calls_of_both_transports(web_server: WebServer) -> None:
    rpc = "recsvc.v1.Recommender/RecommendProducts"
    for _ in range(4):
        assert web_server.http.call(rpc, {"customerId": "someone", "limit": 3}).status == 200
    assert web_server.http.call(rpc, {"customerId": ""}).status == 400
    t = web_server.http.get("/dashboard/api/traffic", token="admin-token").json()
    assert t["interval_s"] == 5.0
    rows = {r["method"]: r for r in t["table"]}
    row = rows[rpc]
    assert row["calls"] >= 5 and row["errors"] >= 1
    assert row["calls_per_s"] > 0 and row["p50_ms"] is not None and row["p99_ms"] >= row["p50_ms"]
    assert len(t["series"]["t"]) == len(t["series"]["rpc"][rpc]) >= 1
    assert t["fallbacks"]["total"]["cold_start"] >= 4  # "someone" is unknown
    assert set(t["events"]) == {"total", "per_s"}


def test_customers_by_segment_and_stage(web_server: WebServer) -> None:
    c = web_server.http.get("/dashboard/api/customers", token="admin-token").json()
    assert c["available"] is True
    assert sum(c["segments"].values()) == c["customers"] == 60
    assert sum(c["lifecycle_stages"].values()) == 60
    assert sum(n for stages in c["segment_by_stage"].values() for n in stages.values()) == 60
    assert c["generation"] >= 1 and c["loaded_at"]


def test_offer_funnels_and_budget(web_server: WebServer) -> None:
    customer = web_server.known_customer

    def events(kind: str, token: str) -> int:
        answer = web_server.http.call(
            "recsvc.v1.Events/TrackEvents",
            {
                "events": [
                    {
                        "eventId": new_id(),
                        "customerId": customer,
                        "type": f"EVENT_TYPE_{kind}",
                        "offerId": "welcome",
                    }
                ]
            },
            token=token,
        )
        assert answer.status == 200, answer.body
        return int(answer.json().get("accepted", 0))

    before = {
        o["offer_id"]: o
        for o in web_server.http.get("/dashboard/api/offers", token="admin-token").json()["offers"]
    }["welcome"]
    assert events("OFFER_IMPRESSION", PUBLIC_TOKEN) == 1
    assert events("OFFER_CLICK", PUBLIC_TOKEN) == 1
    assert events("OFFER_REDEEMED", "events-token") == 1
    o = web_server.http.get("/dashboard/api/offers", token="admin-token").json()
    assert o["available"] is True and len(o["catalog_version"]) == 12
    rows = {r["offer_id"]: r for r in o["offers"]}
    welcome = rows["welcome"]
    assert welcome["impressions"] == before["impressions"] + 1
    assert welcome["clicks"] == before["clicks"] + 1
    assert welcome["redemptions"] == before["redemptions"] + 1
    assert welcome["spent"] == pytest.approx(before["spent"] + 2.0)  # cost 2
    assert welcome["budget"] == 100.0
    assert welcome["budget_used"] == pytest.approx(welcome["spent"] / 100.0)
    assert welcome["redemption_rate"] == pytest.approx(
        welcome["redemptions"] / welcome["impressions"]
    )
    assert rows["shipping"]["budget"] is None and rows["shipping"]["budget_used"] is None


def test_experiments_wait_for_arms(web_server: WebServer) -> None:
    e = web_server.http.get("/dashboard/api/experiments", token="admin-token").json()
    assert e == {"available": False, "reason": EXPERIMENTS_PENDING, "arms": []}


def test_unknown_part_and_the_pages(web_server: WebServer) -> None:
    http = web_server.http
    assert http.get("/dashboard/api/secrets", token="admin-token").status == 404
    page = http.get("/dashboard")
    assert page.status == 200
    assert b"<canvas" in page.body and b"Admin token" in page.body
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    for path in ("dashboard.js", "dashboard.css", "vendor/chart.umd.min.js", "vendor/LICENSE.md"):
        assert http.get(f"/dashboard/static/{path}").status == 200, path
    assert http.get("/dashboard/static/../../server.py").status == 404
    home = http.send("/", method="GET")
    assert home.status == 200 and home.body == page.body  # redirected to the dashboard


# -- the numbers behind the traffic view --------------------------------------------------------


def test_customer_counts_of_a_load() -> None:
    rows = pl.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "segment": ["high_value", "high_value", "prospect", None],
            "lifecycle_stage": ["loyal", "active", "prospect", "new"],
        }
    )
    counts = customer_counts(rows)
    assert counts["segments"] == {"high_value": 2, "prospect": 1, "unknown": 1}
    assert counts["lifecycle_stages"] == {"loyal": 1, "active": 1, "prospect": 1, "new": 1}
    assert counts["segment_by_stage"]["high_value"] == {"loyal": 1, "active": 1}
    assert customer_counts(pl.DataFrame({"customer_id": ["a"]})) == {}


def test_quantile_interpolates_within_the_bucket() -> None:
    bounds = (0.001, 0.002, 0.005, math.inf)
    assert traffic.quantile(0.5, bounds, (0, 0, 0, 0)) is None
    # 10 calls, all between 1 and 2 ms: the median is half way.
    assert traffic.quantile(0.5, bounds, (0, 10, 10, 10)) == pytest.approx(0.0015)
    # 100 calls: 90 under 1 ms, 9 in 2..5 ms, 1 slower than 5 ms.
    cumulative = (90, 90, 99, 100)
    assert traffic.quantile(0.5, bounds, cumulative) == pytest.approx(0.001 * 50 / 90)
    assert traffic.quantile(0.95, bounds, cumulative) == pytest.approx(0.002 + 0.003 * 5 / 9)
    assert traffic.quantile(0.999, bounds, cumulative) == 0.005  # past the last finite bound


def collected(registry: CollectorRegistry, at: float) -> traffic.Snapshot:
    return traffic.collect(registry.collect(), now=at)


def test_report_rates_and_percentiles_between_snapshots() -> None:
    registry = CollectorRegistry()
    seconds = Histogram(
        traffic.RPC_SECONDS, "x", ["method", "code"], buckets=(0.001, 0.01), registry=registry
    )
    fallbacks = Counter("recsvc_fallbacks", "x", ["kind"], registry=registry)
    degraded = Counter("recsvc_feature_store_degraded", "x", registry=registry)
    m = "recsvc.v1.Recommender/RecommendProducts"
    first = collected(registry, 100.0)
    for _ in range(20):
        seconds.labels(m, "OK").observe(0.0005)
    seconds.labels(m, "INVALID_ARGUMENT").observe(0.0005)
    fallbacks.labels("cold_start").inc(4)
    degraded.inc(3)
    second = collected(registry, 110.0)
    for _ in range(10):
        seconds.labels(m, "OK").observe(0.005)
    third = collected(registry, 120.0)
    r = traffic.report([first, second, third])
    a, b = r["series"]["rpc"][m]
    assert a["calls_per_s"] == pytest.approx(2.1) and a["errors_per_s"] == pytest.approx(0.1)
    assert a["p50_ms"] == pytest.approx(0.5, rel=0.05)  # in the first bucket
    assert b["calls_per_s"] == pytest.approx(1.0) and b["errors_per_s"] == 0
    assert 1.0 < b["p50_ms"] <= 10.0  # all in the 1..10 ms bucket
    assert r["series"]["fallbacks_per_s"][0] == {"cold_start": pytest.approx(0.4)}
    assert r["series"]["degraded_per_s"] == [pytest.approx(0.3), 0.0]
    (row,) = r["table"]
    assert row["calls"] == 31 and row["errors"] == 1
    assert row["calls_per_s"] == pytest.approx(31 / 20)
    assert r["degraded"]["share_of_calls"] == pytest.approx(3 / 31)
    assert r["window_s"] == 20.0


def test_metrics_with_an_arm_label_show_as_experiment_results() -> None:
    registry = CollectorRegistry()
    clicks = Counter("recsvc_arm_clicks", "x", ["arm", "model_version"], registry=registry)
    clicks.labels("control", "v1").inc(7)
    clicks.labels("treatment", "v2").inc(9)
    arms: list[dict[str, Any]] = traffic.arms(collected(registry, 1.0))
    assert arms == [
        {"arm": "control", "metric": "recsvc_arm_clicks_total", "labels": {"model_version": "v1"},
         "value": 7.0},
        {"arm": "treatment", "metric": "recsvc_arm_clicks_total",
         "labels": {"model_version": "v2"}, "value": 9.0},
    ]  # fmt: skip

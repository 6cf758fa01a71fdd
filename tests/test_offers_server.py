# mypy: disable-error-code="no-untyped-call"
"""RecommendOffers, ReloadOffers and redemptions over gRPC, with a real Redis."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import polars as pl
import pytest
from grpc_helpers import ADMIN, ALL, EVENTS, REC
from redis_fixtures import new_namespace, start_server
from serving_fixtures import add_copy, trained

from feature_store import bulk
from feature_store.embedded import EmbeddedRedis
from feature_store.store import FeatureStore
from recsvc.server import Running
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc
from training.features import feature_frames

ROOT = Path(__file__).resolve().parent.parent
CATALOG = """
version: 1
offers:
  - offer_id: welcome
    title: 10% off your first order
    kind: percent_off
    value: 10
    cost: 2
    value_to_business: 10
    lifecycle_stages: [prospect]
    first_purchase_only: true
    max_redemptions_per_customer: 1
  - offer_id: gold-gift
    title: A gift for Gold members
    kind: gift
    value: 5
    cost: 5
    value_to_business: 8
    tiers: [gold]
    budget: 10
  - offer_id: shipping
    title: Free shipping
    kind: free_shipping
    cost: 1
    value_to_business: 2
    max_impressions_per_day: 1
"""


@pytest.fixture
def setup(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, embedded_redis: EmbeddedRedis
) -> Iterator[tuple[Running, grpc.Channel, FeatureStore, Path]]:
    model_dir = tmp_path / "models"
    add_copy(model_dir, trained(tmp_path_factory), "v1", publish=True)
    offers = tmp_path / "offers.yaml"
    offers.write_text(CATALOG)
    namespace = new_namespace()
    store = FeatureStore(embedded_redis.url, namespace=namespace)
    # C-gold: a loaded customer with tier gold and purchases; nobody else is loaded.
    ts = pl.datetime(2026, 1, 1, time_zone="UTC")
    interactions = pl.DataFrame(
        {
            "customer_id": ["C-gold"] * 2,
            "product_id": ["P000001", "P000002"],
            "event_type": ["purchase"] * 2,
            "amount": [5.0, 6.0],
        }
    ).with_columns(ts.alias("timestamp"))
    catalog = pl.DataFrame(
        {
            "product_id": ["P000001", "P000002"],
            "category": ["a", "b"],
            "price": [1.0, 2.0],
            "in_stock": [True, True],
        }
    )
    customers = pl.DataFrame({"customer_id": ["C-gold"], "tier": ["gold"], "points": [10.0]})
    bulk.load(store, *feature_frames(interactions, catalog, customers), progress=False)
    running = start_server(model_dir, embedded_redis.url, namespace, offers=offers)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    yield running, channel, store, offers
    channel.close()
    running.stop(0)
    store.close()


def offers_for(channel: grpc.Channel, customer: str, limit: int = 5) -> pb.RecommendOffersResponse:
    stub = pb_grpc.RecommenderStub(channel)
    reply: pb.RecommendOffersResponse = stub.RecommendOffers(
        pb.RecommendOffersRequest(customer_id=customer, limit=limit), metadata=REC, timeout=10
    )
    return reply


def redeem(channel: grpc.Channel, event_id: str, customer: str, offer: str) -> pb.EventResult:
    stub = pb_grpc.EventsStub(channel)
    event = pb.Event(
        event_id=event_id,
        customer_id=customer,
        type=pb.EVENT_TYPE_OFFER_REDEEMED,
        offer_id=offer,
        amount=20,
    )
    reply = stub.TrackEvents(pb.TrackEventsRequest(events=[event]), metadata=EVENTS, timeout=10)
    result: pb.EventResult = reply.results[0]
    return result


def test_prospects_and_members_get_their_eligible_offers(setup: tuple[Any, ...]) -> None:
    _, channel, _, _ = setup
    prospect = offers_for(channel, "NEW-1")
    assert {o.offer_id for o in prospect.offers} == {"welcome", "shipping"}
    assert not prospect.personalized
    assert prospect.recommendation_id.startswith("of-")
    member = offers_for(channel, "C-gold")
    assert {o.offer_id for o in member.offers} == {"gold-gift", "shipping"}  # not first purchase
    assert member.personalized
    gift = next(o for o in member.offers if o.offer_id == "gold-gift")
    assert gift.reason == "Gold member"
    assert gift.expected_value == pytest.approx(gift.probability * 8)
    values = [o.expected_value for o in member.offers]
    assert values == sorted(values, reverse=True)


def test_caps_hold_through_events(setup: tuple[Any, ...]) -> None:
    _, channel, _, _ = setup
    assert redeem(channel, "r1", "NEW-2", "welcome").status == pb.EVENT_STATUS_ACCEPTED
    again = redeem(channel, "r2", "NEW-2", "welcome")
    assert again.status == pb.EVENT_STATUS_REJECTED and "limit" in again.reason
    assert redeem(channel, "r1", "NEW-2", "welcome").status == pb.EVENT_STATUS_DUPLICATE
    # Budget 10 at cost 5: two redemptions in all, then the offer is gone for everyone.
    assert redeem(channel, "g1", "C-gold", "gold-gift").status == pb.EVENT_STATUS_ACCEPTED
    assert redeem(channel, "g2", "C-gold", "gold-gift").status == pb.EVENT_STATUS_ACCEPTED
    assert redeem(channel, "g3", "C-gold", "gold-gift").status == pb.EVENT_STATUS_REJECTED
    assert "gold-gift" not in {o.offer_id for o in offers_for(channel, "C-gold").offers}
    # One impression a day of free shipping.
    stub = pb_grpc.EventsStub(channel)
    shown = pb.Event(
        event_id="i1", customer_id="NEW-3", type=pb.EVENT_TYPE_OFFER_IMPRESSION, offer_id="shipping"
    )
    stub.TrackEvents(pb.TrackEventsRequest(events=[shown]), metadata=EVENTS, timeout=10)
    assert "shipping" not in {o.offer_id for o in offers_for(channel, "NEW-3").offers}
    assert "shipping" in {o.offer_id for o in offers_for(channel, "NEW-4").offers}


def test_validation_and_scopes(setup: tuple[Any, ...]) -> None:
    _, channel, _, _ = setup
    stub = pb_grpc.RecommenderStub(channel)
    for request, code in (
        (pb.RecommendOffersRequest(customer_id=""), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.RecommendOffersRequest(customer_id="C", limit=51), grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.RpcError) as err:
            stub.RecommendOffers(request, metadata=REC, timeout=10)
        assert err.value.code() == code
    with pytest.raises(grpc.RpcError) as err:
        stub.RecommendOffers(pb.RecommendOffersRequest(customer_id="C"), metadata=EVENTS)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_reload_refuses_a_bad_catalog_and_keeps_the_old(setup: tuple[Any, ...]) -> None:
    _, channel, _, offers = setup
    admin = pb_grpc.AdminStub(channel)
    offers.write_text(CATALOG.replace("kind: gift", "kind: voucher"))
    with pytest.raises(grpc.RpcError) as err:
        admin.ReloadOffers(pb.ReloadOffersRequest(), metadata=ADMIN, timeout=10)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "voucher" in (err.value.details() or "")
    assert {o.offer_id for o in offers_for(channel, "NEW-5").offers} == {"welcome", "shipping"}
    shutil.copy(ROOT / "examples" / "offers.yaml", offers)
    reply = admin.ReloadOffers(pb.ReloadOffersRequest(), metadata=ALL, timeout=10)
    assert reply.offers > 3
    assert "welcome" not in {o.offer_id for o in offers_for(channel, "NEW-5", 50).offers}


def test_no_catalog_configured_is_unavailable(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, embedded_redis: EmbeddedRedis
) -> None:
    model_dir = tmp_path / "models"
    add_copy(model_dir, trained(tmp_path_factory), "v1", publish=True)
    running = start_server(model_dir, embedded_redis.url, new_namespace())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            with pytest.raises(grpc.RpcError) as err:
                offers_for(channel, "C")
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "RECSVC_OFFERS" in (err.value.details() or "")
    finally:
        running.stop(0)


def test_targets_missing_from_the_model_are_logged(
    setup: tuple[Any, ...], caplog: pytest.LogCaptureFixture
) -> None:
    _, channel, _, offers = setup
    extra = """
  - offer_id: ghost
    title: 5% off ghosts
    kind: percent_off
    value: 5
    cost: 1
    value_to_business: 1
    categories: [no-such-category]
"""
    offers.write_text(CATALOG + extra)
    pb_grpc.AdminStub(channel).ReloadOffers(pb.ReloadOffersRequest(), metadata=ADMIN, timeout=10)
    with caplog.at_level(logging.WARNING, logger="recsvc.offer_service"):
        offers_for(channel, "C-gold")
    assert any(
        "ghost" in r.getMessage() and "no-such-category" in r.getMessage() for r in caplog.records
    )

# mypy: disable-error-code="no-untyped-call"
"""Loyalty, offer caps, customer profiles, consent and data-protection requests, against a
real Redis (the session's embedded one, a namespace per test) and a real gRPC server on
loopback.

Covers ``feature_store.loyalty_balances`` (set_loyalty), ``feature_store.offer_usage`` (redeem,
record_offer_events, offer_state), ``feature_store.privacy`` (forget, export_customer,
tombstones), ``recsvc.customer_service.Customers``, GetCustomerProfile,
SetLoyalty, ForgetCustomer and ExportCustomerData, consent in serving and training, and the
tombstone honoured by ``recsvc events export`` and ``recsvc train``.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import polars as pl
import pytest
from frames import interactions_frame
from grpc_helpers import ADMIN, ALL, EVENTS, PRIVACY, REC, Metadata, new_id, now_ms, rpc_error
from redis_fixtures import READ_TIMEOUT_S, WRITE_TIMEOUT_S, new_namespace, start_server
from serving_fixtures import add_copy, trained

from feature_store import bulk
from feature_store import offer_usage as fu
from feature_store import privacy as fp
from feature_store.connection import RedisSettings
from feature_store.embedded import EmbeddedRedis
from feature_store.export import export_events
from feature_store.keys import OFFER_DAY_TTL
from feature_store.store import FeatureStore, as_text
from formats import bundle as b
from formats.errors import InvalidRequest
from formats.events import Event, decode
from recsvc.cli import main
from recsvc.customer_service import Customers
from recsvc.server import Running
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc
from training import synth
from training.cold_start import ColdStartConfig
from training.config import TrainConfig
from training.features import feature_frames
from training.train import run

V1 = "20260101T000000Z-customers"
# The cold-start check (an extra fit) is tested in test_content.py; here it only costs time.
QUIET = TrainConfig(
    progress=False,
    baselines=("popularity",),
    clv_check=False,
    cold_start=ColdStartConfig(fraction=0.0),
)


def pb_event(customer: str, type: pb.EventType, product_id: str = "", **fields: Any) -> pb.Event:
    event = pb.Event(event_id=new_id(), customer_id=customer, type=type, product_id=product_id)
    for name, value in fields.items():
        setattr(event, name, value)
    event.timestamp.FromMilliseconds(now_ms() - 1000)
    return event


# ---------------------------------------------------------------------------------------------
# Hand-made feature-store worlds (typed like training.ingest's output)

Row = tuple[str, str, str, float | None]  # customer, product, event type, amount
START = datetime(2026, 1, 5, 12, tzinfo=UTC)
CATALOG = pl.DataFrame(
    {
        "product_id": ["K1", "K2", "T1", "S1"],
        "category": ["coffee", "coffee", "tea", "snacks"],
        "price": [10.0, 20.0, 5.0, 3.0],
        "in_stock": [True, True, True, True],
    }
)


def interactions(rows: list[Row]) -> pl.DataFrame:
    """One event an hour from START, in row order."""
    return interactions_frame(
        [
            (c, p, START + timedelta(hours=i), kind, amount)
            for i, (c, p, kind, amount) in enumerate(rows)
        ]
    )


def people(rows: list[tuple[str, str | None, float | None, bool]]) -> pl.DataFrame:
    """customer_id, tier, points, consent_personalization."""
    return pl.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "tier": [r[1] for r in rows],
            "points": [r[2] for r in rows],
            "consent_personalization": [r[3] for r in rows],
        },
        schema={
            "customer_id": pl.Utf8,
            "tier": pl.Utf8,
            "points": pl.Float64,
            "consent_personalization": pl.Boolean,
        },
    )


def load(
    store: FeatureStore, rows: list[Row], customers: pl.DataFrame, catalog: pl.DataFrame = CATALOG
) -> None:
    bulk.load(store, *feature_frames(interactions(rows), catalog, customers), progress=False)


def customer_keys(store: FeatureStore, customer_id: str) -> list[str]:
    """Every key of the namespace carrying the customer's hash tag."""
    pattern = f"{store.keys.prefix}:*{{c:{customer_id}}}*"
    return sorted(as_text(k) for k in store.writer.scan_iter(match=pattern, count=1000))


def usage_hashes(store: FeatureStore) -> dict[str, dict[str, str]]:
    """Every offer usage hash of the namespace: key -> fields."""
    pattern = f"{store.keys.prefix}:{{o:*}}:usage"
    return {
        as_text(key): {
            as_text(f): as_text(v) for f, v in store.writer.hgetall(as_text(key)).items()
        }
        for key in store.writer.scan_iter(match=pattern, count=1000)
    }


def stream_events(store: FeatureStore) -> list[Event]:
    return [decode(f[b"e"]) for _, f in store.writer.xrange(store.keys.stream)]


def exported(out: Path) -> pl.DataFrame:
    files = sorted(out.glob("day=*/part-*.parquet"))
    if not files:
        return pl.DataFrame(schema={"customer_id": pl.Utf8, "event_id": pl.Utf8})
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical")


def concurrently(n: int, fn: Callable[[int], str | None]) -> list[str | None]:
    """Run ``fn(0..n-1)`` on n threads released together."""
    barrier = threading.Barrier(n)

    def go(i: int) -> str | None:
        barrier.wait(timeout=30)
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(go, range(n)))


# ---------------------------------------------------------------------------------------------
# Served: an in-process server with the privacy token, a namespace of its own


@dataclass
class Served:
    running: Running
    channel: grpc.Channel
    namespace: str
    store: FeatureStore | None = None
    rec: Any = field(init=False)
    events: Any = field(init=False)
    admin: Any = field(init=False)
    privacy: Any = field(init=False)

    def __post_init__(self) -> None:
        self.rec = pb_grpc.RecommenderStub(self.channel)
        self.events = pb_grpc.EventsStub(self.channel)
        self.admin = pb_grpc.AdminStub(self.channel)
        self.privacy = pb_grpc.PrivacyStub(self.channel)

    @property
    def fs(self) -> FeatureStore:
        assert self.store is not None
        return self.store

    def track(self, *events: pb.Event) -> None:
        reply = self.events.TrackEvents(
            pb.TrackEventsRequest(events=list(events)), metadata=EVENTS, timeout=10
        )
        assert reply.accepted == len(events), reply

    def profile(self, customer_id: str, metadata: Metadata = REC) -> Any:
        request = pb.GetCustomerProfileRequest(customer_id=customer_id)
        return self.rec.GetCustomerProfile(request, metadata=metadata, timeout=10)

    def recommend(self, customer_id: str) -> Any:
        request = pb.RecommendProductsRequest(customer_id=customer_id, limit=10)
        return self.rec.RecommendProducts(request, metadata=REC, timeout=10)

    def forget(self, customer_id: str, metadata: Metadata = PRIVACY) -> Any:
        request = pb.ForgetCustomerRequest(customer_id=customer_id)
        return self.privacy.ForgetCustomer(request, metadata=metadata, timeout=30)

    def export_data(self, customer_id: str, metadata: Metadata = PRIVACY) -> Any:
        request = pb.ExportCustomerDataRequest(customer_id=customer_id)
        return self.privacy.ExportCustomerData(request, metadata=metadata, timeout=30)


@contextmanager
def serving(models: Path, redis_url: str | None) -> Iterator[Served]:
    """A server on ``models`` (grpc_helpers.TOKENS); ``redis_url`` None = no feature store."""
    namespace = new_namespace()
    overrides: dict[str, Any] = {}
    if redis_url is None:
        overrides["redis"] = RedisSettings()  # url None: bundle-only serving
    running = start_server(models, redis_url or "", namespace, **overrides)
    store = (
        None
        if redis_url is None
        else FeatureStore(
            redis_url,
            namespace=namespace,
            read_timeout_s=READ_TIMEOUT_S,
            write_timeout_s=WRITE_TIMEOUT_S,
        )
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield Served(running, channel, namespace, store)
    finally:
        channel.close()
        if store is not None:
            store.close()
        running.stop(grace=1.0)


@pytest.fixture(scope="module")
def served_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("served-customers") / "models"
    add_copy(models, trained(tmp_path_factory, "exact"), V1, publish=True)
    return models


@pytest.fixture(scope="module")
def trained_bundle(served_models: Path) -> b.Bundle:
    return b.load_bundle(served_models / V1)


@pytest.fixture(scope="module")
def with_history(trained_bundle: b.Bundle) -> list[str]:
    """Trained customers with a vector and a handful of products each."""
    sizes = np.diff(trained_bundle.user_items.indptr)
    rows = [
        r for r in range(len(sizes)) if 4 <= sizes[r] <= 12 and trained_bundle.user_factors[r].any()
    ]
    return [str(trained_bundle.customer_ids[r]) for r in rows[:4]]


@pytest.fixture(name="served")
def served_fixture(served_models: Path, embedded_redis: EmbeddedRedis) -> Iterator[Served]:
    with serving(served_models, embedded_redis.url) as s:
        yield s


# =============================================================================================
# 1. Loyalty


def test_set_loyalty_from_nothing(store: FeatureStore) -> None:
    core = Customers(store, list)
    cid = "L-new"
    assert store.activity(cid).tier is None and store.activity(cid).points == 0.0
    assert core.set_loyalty(cid, tier="gold") == ("gold", 0.0)
    assert core.set_loyalty(cid, points=100) == ("gold", 100.0)
    assert core.set_loyalty(cid, delta=-30) == ("gold", 70.0)
    assert core.set_loyalty(cid, delta=2.5) == ("gold", 72.5)
    assert core.set_loyalty(cid, delta=-1000) == ("gold", 0.0)  # never below zero
    assert core.set_loyalty(cid, tier="silver", points=12) == ("silver", 12.0)
    activity = store.activity(cid)
    assert (activity.tier, activity.points) == ("silver", 12.0)
    assert activity.profile is None

    # A first change that is a negative delta: no tier, balance floored at 0.
    assert core.set_loyalty("L-other", delta=-5) == ("", 0.0)
    other = store.activity("L-other")
    assert (other.tier, other.points) == (None, 0.0)


def test_set_loyalty_starts_from_the_loaded_profile(store: FeatureStore) -> None:
    rows: list[Row] = [
        ("L-silver", "K1", "purchase", 10.0),
        ("L-plain", "T1", "view", None),
    ]
    load(
        store,
        rows,
        people([("L-silver", "silver", 120.0, True), ("L-gold", "gold", 40.0, True)]),
    )
    core = Customers(store, list)
    loaded = store.activity("L-silver")
    assert (loaded.tier, loaded.points) == ("silver", 120.0)  # straight from the customers file

    assert core.set_loyalty("L-silver", delta=30) == ("silver", 150.0)
    assert core.set_loyalty("L-silver", delta=-200) == ("silver", 0.0)
    assert core.set_loyalty("L-silver", delta=7) == ("silver", 7.0)  # from the new balance
    after = store.activity("L-silver")
    assert (after.tier, after.points) == ("silver", 7.0)
    profile = store.profile("L-silver")
    assert profile is not None and profile["points"] == 120.0  # the load itself is untouched

    # Only in the customers file (no history): a tier change keeps the loaded balance.
    assert core.set_loyalty("L-gold", tier="platinum") == ("platinum", 40.0)
    gold = store.activity("L-gold")
    assert (gold.tier, gold.points) == ("platinum", 40.0)

    # Loaded without tier or points (interactions only): starts from 0 and no tier.
    assert core.set_loyalty("L-plain", delta=10) == ("", 10.0)
    plain = store.activity("L-plain")
    assert (plain.tier, plain.points) == (None, 10.0)


NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("customer_id", "tier", "points", "delta", "message"),
    [
        ("L-bad", None, None, None, "set tier, points or points_delta"),
        ("L-bad", None, 10.0, 5.0, "not both"),
        ("L-bad", None, -1.0, None, "negative"),
        ("L-bad", None, NAN, None, "not a finite number"),
        ("L-bad", None, INF, None, "not a finite number"),
        ("L-bad", None, None, NAN, "not a finite number"),
        ("L-bad", None, None, -INF, "not a finite number"),
        ("L-bad", "", None, None, "tier must be"),
        ("L-bad", "   ", None, None, "tier must be"),
        ("L-bad", "x" * 65, None, None, "tier must be"),
        ("", "gold", None, None, "customer_id is empty"),
        ("  ", "gold", None, None, "customer_id is empty"),
        ("c" * 129, "gold", None, None, "maximum is 128"),
    ],
)
def test_set_loyalty_rejects_bad_requests(
    store: FeatureStore,
    customer_id: str,
    tier: str | None,
    points: float | None,
    delta: float | None,
    message: str,
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        Customers(store, list).set_loyalty(customer_id, tier, points, delta)
    assert customer_keys(store, customer_id) == []  # nothing written
    assert store.writer.exists(store.keys.loyalty(customer_id)) == 0


def test_set_loyalty_accepts_the_longest_tier(store: FeatureStore) -> None:
    assert Customers(store, list).set_loyalty("L-long", tier="t" * 64) == ("t" * 64, 0.0)


# =============================================================================================
# 2. Redemptions: caps, budgets, idempotency, concurrency


def usage(store: FeatureStore, offer: str, customer: str) -> fu.OfferUsage:
    usages, _ = fu.offer_state(store, customer, [offer])
    return usages[offer]


def test_redeem_per_customer_cap(store: FeatureStore) -> None:
    offer = "o-cap"
    for event in ("e1", "e2"):
        assert fu.redeem(store, offer, "c1", event, cost=1.0, max_per_customer=2) is None
    reason = fu.redeem(store, offer, "c1", "e3", cost=1.0, max_per_customer=2)
    assert reason is not None and "limit" in reason
    # The cap is per customer: another customer still gets it.
    assert fu.redeem(store, offer, "c2", "e4", cost=1.0, max_per_customer=2) is None
    assert usage(store, offer, "c1") == fu.OfferUsage(redemptions=2, spent=3.0)
    assert usage(store, offer, "c2").redemptions == 1
    # 0 = no cap
    for i in range(5):
        assert fu.redeem(store, "o-uncapped", "c1", f"u{i}", cost=0.0) is None
    assert usage(store, "o-uncapped", "c1").redemptions == 5


def test_redeem_budget_cap(store: FeatureStore) -> None:
    offer = "o-budget"
    assert fu.redeem(store, offer, "c1", "e1", cost=2.5, budget=7.5) is None
    assert fu.redeem(store, offer, "c2", "e2", cost=2.5, budget=7.5) is None
    assert fu.redeem(store, offer, "c3", "e3", cost=2.5, budget=7.5) is None  # exactly spent
    reason = fu.redeem(store, offer, "c4", "e4", cost=2.5, budget=7.5)
    assert reason is not None and "budget" in reason
    # A cheaper redemption does not fit either: nothing is left.
    assert fu.redeem(store, offer, "c4", "e5", cost=0.5, budget=7.5) is not None
    assert usage(store, offer, "c4") == fu.OfferUsage(redemptions=0, spent=7.5)


def test_redeem_is_idempotent_per_event_id(store: FeatureStore) -> None:
    offer = "o-idem"
    assert fu.redeem(store, offer, "c1", "same", cost=4.0, max_per_customer=1) is None
    # A retry of the granted call is granted again, and not counted twice.
    assert fu.redeem(store, offer, "c1", "same", cost=4.0, max_per_customer=1) is None
    assert usage(store, offer, "c1") == fu.OfferUsage(redemptions=1, spent=4.0)
    # A different redemption is refused by the cap of 1.
    assert fu.redeem(store, offer, "c1", "other", cost=4.0, max_per_customer=1) is not None
    # Budgets as well: the retry does not spend the budget again.
    assert fu.redeem(store, "o-idem-b", "c1", "x", cost=5.0, budget=5.0) is None
    assert fu.redeem(store, "o-idem-b", "c1", "x", cost=5.0, budget=5.0) is None
    assert usage(store, "o-idem-b", "c1") == fu.OfferUsage(redemptions=1, spent=5.0)


def test_concurrent_redemptions_against_a_cap_of_one(store: FeatureStore) -> None:
    offer = "o-race"
    results = concurrently(
        20, lambda i: fu.redeem(store, offer, "c-race", f"ev-{i}", cost=1.0, max_per_customer=1)
    )
    granted = [r for r in results if r is None]
    refused = [r for r in results if r is not None]
    assert len(granted) == 1
    assert len(refused) == 19 and all("limit" in r for r in refused)
    assert usage(store, offer, "c-race") == fu.OfferUsage(redemptions=1, spent=1.0)


def test_concurrent_redemptions_against_a_budget(store: FeatureStore) -> None:
    offer = "o-race-budget"
    results = concurrently(
        20, lambda i: fu.redeem(store, offer, f"c-{i}", f"ev-{i}", cost=2.5, budget=7.5)
    )
    assert sum(r is None for r in results) == 3
    assert all("budget" in r for r in results if r is not None)
    counts = [usage(store, offer, f"c-{i}").redemptions for i in range(20)]
    assert sorted(counts) == [0] * 17 + [1] * 3
    assert usage(store, offer, "c-0").spent == 7.5


# =============================================================================================
# 3. Offer impressions and observed counts


def test_record_offer_events_and_offer_state(store: FeatureStore) -> None:
    now = datetime.now(UTC)
    ts = int(now.timestamp() * 1000)
    yesterday = int((now - timedelta(days=1)).timestamp() * 1000)
    fu.record_offer_events(store, [])  # nothing to do
    fu.record_offer_events(
        store,
        [
            ("c1", "o1", "impression", ts),
            ("c1", "o1", "impression", ts),
            ("c1", "o2", "impression", ts),
            ("c2", "o1", "impression", ts),
            ("c1", "o1", "impression", yesterday),  # sent late: counts on the day received
            ("c1", "o1", "click", ts),
            ("c2", "o2", "click", ts),
            ("c1", "o1", "redemption", ts),
        ],
    )
    usages, stats = fu.offer_state(store, "c1", ["o1", "o2", "o3"], now=now)
    assert {o: u.impressions_today for o, u in usages.items()} == {"o1": 3, "o2": 1, "o3": 0}
    assert stats == {
        "o1": fu.OfferStats(impressions=4, clicks=1, redemptions=1),
        "o2": fu.OfferStats(impressions=1, clicks=1, redemptions=0),
        "o3": fu.OfferStats(),
    }
    other, _ = fu.offer_state(store, "c2", ["o1", "o2"], now=now)
    assert (other["o1"].impressions_today, other["o2"].impressions_today) == (1, 0)
    earlier, _ = fu.offer_state(store, "c1", ["o1"], now=now - timedelta(days=1))
    assert earlier["o1"].impressions_today == 0
    # Day counters expire (bounded memory), not before the day is over anywhere.
    ttl = store.writer.ttl(store.keys.offer_impressions("c1", fu.today(now)))
    assert 0 < ttl <= OFFER_DAY_TTL


# =============================================================================================
# 4. GetCustomerProfile and SetLoyalty over gRPC

PROFILE_ROWS: list[Row] = [
    ("P-gold", "K1", "purchase", 10.0),
    ("P-gold", "K2", "purchase", 20.0),
    ("P-gold", "T1", "purchase", 5.0),
    ("P-gold", "S1", "view", None),
    ("P-gold", "K1", "purchase", 10.0),
]


def test_get_customer_profile(served: Served) -> None:
    load(served.fs, PROFILE_ROWS, people([("P-gold", "gold", 250.0, True)]))
    p = served.profile("P-gold")
    assert p.customer_id == "P-gold" and p.known
    assert (p.tier, p.points) == ("gold", 250.0)
    assert (p.purchases, p.spend) == (4, 45.0)
    assert list(p.top_categories) == ["coffee", "tea"]
    assert p.consent_personalization is True

    served.track(
        pb_event("P-gold", pb.EVENT_TYPE_PURCHASE, "T1", amount=4.5),
        pb_event("P-gold", pb.EVENT_TYPE_PURCHASE, "K2", amount=0.5, quantity=2),
        pb_event("P-gold", pb.EVENT_TYPE_VIEW, "S1"),
    )
    grown = served.profile("P-gold")
    assert (grown.purchases, grown.spend) == (6, 50.0)
    assert (grown.tier, grown.points) == ("gold", 250.0)

    reply = served.admin.SetLoyalty(
        pb.SetLoyaltyRequest(customer_id="P-gold", points_delta=-50, tier="platinum"),
        metadata=ADMIN,
        timeout=10,
    )
    assert (reply.tier, reply.points) == ("platinum", 200.0)
    after = served.profile("P-gold")
    assert (after.tier, after.points) == ("platinum", 200.0)


def test_profile_of_an_unknown_customer(served: Served) -> None:
    p = served.profile("nobody-" + new_id())
    assert not p.known
    assert (p.tier, p.points, p.purchases, p.spend) == ("", 0.0, 0, 0.0)
    assert (p.segment, p.lifecycle_stage, list(p.top_categories)) == ("", "", [])
    assert p.consent_personalization  # opt-out: nothing said means consent


def test_profile_does_not_call_a_buyer_a_prospect(served: Served) -> None:
    """The issue defines a prospect as a customer with no purchase; before analytics are
    loaded a customer with purchases has an unknown stage, not "prospect"."""
    load(served.fs, PROFILE_ROWS, people([("P-gold", "gold", 250.0, True)]))
    p = served.profile("P-gold")
    assert p.purchases == 4
    assert p.lifecycle_stage != "prospect"


def test_profile_and_loyalty_rpc_errors(served: Served) -> None:
    for metadata in (EVENTS, ADMIN, PRIVACY):
        code, details = rpc_error(partial(served.profile, "P-gold", metadata))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "'recommend'" in details
    code, _ = rpc_error(partial(served.profile, "P-gold", ()))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, details = rpc_error(partial(served.profile, ""))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "customer_id" in details

    def set_loyalty(metadata: Metadata, **fields: Any) -> Any:
        request = pb.SetLoyaltyRequest(customer_id="P-x", **fields)
        return served.admin.SetLoyalty(request, metadata=metadata, timeout=10)

    code, _ = rpc_error(partial(set_loyalty, REC, points=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, details = rpc_error(partial(set_loyalty, ADMIN, points=5, points_delta=1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not both" in details
    code, _ = rpc_error(partial(set_loyalty, ADMIN))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = rpc_error(partial(set_loyalty, ADMIN, points=-1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert customer_keys(served.fs, "P-x") == []


def test_privacy_rpcs_need_the_privacy_scope(served: Served) -> None:
    for metadata in (REC, EVENTS, ADMIN, ALL):
        for call in (served.forget, served.export_data):
            code, details = rpc_error(partial(call, "P-gold", metadata))
            assert code == grpc.StatusCode.PERMISSION_DENIED and "'privacy'" in details
    assert served.fs.writer.exists(served.fs.keys.tombstones) == 0
    root = (("authorization", "Bearer root-token"),)
    assert served.forget("P-gold", root).tombstoned
    code, details = rpc_error(partial(served.forget, ""))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "customer_id" in details


def test_without_a_feature_store_customer_rpcs_are_unavailable(served_models: Path) -> None:
    with serving(served_models, None) as s:
        calls: list[Callable[[], object]] = [
            partial(s.profile, "P-gold"),
            partial(s.forget, "P-gold"),
            partial(s.export_data, "P-gold"),
            partial(
                s.admin.SetLoyalty,
                pb.SetLoyaltyRequest(customer_id="P-gold", points=1),
                metadata=ADMIN,
                timeout=10,
            ),
        ]
        for call in calls:
            code, details = rpc_error(call)
            assert code == grpc.StatusCode.UNAVAILABLE and "REDIS_URL" in details
        # Recommendations do not need it.
        assert s.recommend("C0000001").items


# =============================================================================================
# 5. Consent


def test_no_consent_means_no_personalization(
    served: Served, with_history: list[str], trained_bundle: b.Bundle
) -> None:
    declined, agreed = with_history[0], with_history[1]
    assert served.recommend(declined).personalized  # a trained customer, nothing loaded yet
    products = trained_bundle.products
    catalog = products.select("product_id", "category", "price", "in_stock")
    some = products["product_id"].to_list()[:6]
    rows: list[Row] = [
        (declined, some[0], "purchase", 3.0),
        (agreed, some[0], "purchase", 3.0),
    ]
    load(
        served.fs,
        rows,
        people([(declined, "gold", 10.0, False), (agreed, "gold", 10.0, True)]),
        catalog,
    )
    for customer in (declined, agreed):
        served.track(
            *(pb_event(customer, pb.EVENT_TYPE_PURCHASE, p, amount=1.0) for p in some[1:4]),
            pb_event(customer, pb.EVENT_TYPE_VIEW, some[4]),
        )
    anonymous = served.recommend("never-seen-" + new_id())
    no = served.recommend(declined)
    yes = served.recommend(agreed)
    assert not no.personalized
    assert yes.personalized
    # Nothing of the customer's history or vector shapes the answer: as for a stranger.
    assert [i.product_id for i in no.items] == [i.product_id for i in anonymous.items]
    ranked = served.rec.RankProducts(
        pb.RankProductsRequest(customer_id=declined, product_ids=some), metadata=REC, timeout=10
    )
    assert not ranked.personalized
    assert served.profile(declined).consent_personalization is False
    assert served.profile(agreed).consent_personalization is True


def test_training_leaves_out_customers_without_consent(tmp_path: Path) -> None:
    world = synth.generate(synth.SynthConfig(customers=300, products=40, seed=11))
    counts = world.interactions.group_by("customer_id").len().sort("len", descending=True)
    declined, control = counts["customer_id"][0], counts["customer_id"][1]
    files = synth.write_world(world, tmp_path / "world")
    world.customers.with_columns(
        (pl.col("customer_id") != declined).alias("consent_personalization")
    ).write_parquet(files["customers"])

    result = run(
        files["interactions"],
        tmp_path / "models",
        QUIET,
        catalog=files["catalog"],
        customers=files["customers"],
        echo=lambda _: None,
    )
    ids = set(b.load_bundle(result.path).customer_ids.to_list())
    assert declined not in ids
    assert control in ids
    assert result.manifest["input"]["excluded_customer_rows"] == counts["len"][0]


# =============================================================================================
# 6. ForgetCustomer and ExportCustomerData end to end


@dataclass
class Forgotten:
    """What the scenario saw; the tests below each check one part of it."""

    namespace: str
    redis_url: str
    world_files: dict[str, Path]
    forgotten: str
    kept: str
    offers: tuple[str, str]
    keys_before: list[str]
    stream_ids_in_stream: list[str]  # the forgotten customer's event ids still in the stream
    kept_event_ids: set[str]
    exported_before: pl.DataFrame
    exported_after: pl.DataFrame
    purged: int
    data_before: dict[str, Any]
    data_after: dict[str, Any]
    reply: Any
    keys_after: list[str]
    kept_keys_after: list[str]
    usage_after: dict[str, dict[str, str]]
    stream_after: list[Event]
    dedupe_after: dict[str, int]
    tombstones: dict[str, int]
    profile_after: Any
    loaded_points: float


@pytest.fixture(scope="module")
def forgotten(
    served_models: Path,
    embedded_redis: EmbeddedRedis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Forgotten:
    root = tmp_path_factory.mktemp("forget")
    world = synth.generate(synth.SynthConfig(customers=300, products=40, seed=5))
    world_files = synth.write_world(world, root / "world")
    counts = world.interactions.group_by("customer_id").len().sort("len", descending=True)
    forgotten_id, kept_id = str(counts["customer_id"][0]), str(counts["customer_id"][1])
    offers = ("O-forget", "O-other")
    out = root / "exported"
    with serving(served_models, embedded_redis.url) as s:
        store = s.fs
        frames = feature_frames(world.interactions, world.catalog, world.customers)
        bulk.load(store, *frames, progress=False)
        loaded = store.activity(forgotten_id)
        assert loaded.profile is not None

        reply = s.admin.SetLoyalty(
            pb.SetLoyaltyRequest(customer_id=forgotten_id, points_delta=100),
            metadata=ADMIN,
            timeout=10,
        )
        assert reply.points == loaded.points + 100

        def round_of_events(customer: str, n: int) -> list[pb.Event]:
            kinds = [
                pb_event(customer, pb.EVENT_TYPE_PURCHASE, "P000001", amount=7.0),
                pb_event(customer, pb.EVENT_TYPE_VIEW, "P000002"),
                pb_event(customer, pb.EVENT_TYPE_OFFER_IMPRESSION, offer_id=offers[0]),
            ]
            return kinds[:n]

        first = round_of_events(forgotten_id, 3) + round_of_events(kept_id, 2)
        s.track(*first)
        ts = now_ms()
        fu.record_offer_events(
            store,
            [
                (forgotten_id, offers[0], "impression", ts),
                (forgotten_id, offers[1], "impression", ts),
                (kept_id, offers[0], "impression", ts),
            ],
        )
        for customer, offer, event in (
            (forgotten_id, offers[0], "r-f-1"),
            (forgotten_id, offers[1], "r-f-2"),
            (kept_id, offers[0], "r-k-1"),
        ):
            assert fu.redeem(store, offer, customer, event, cost=2.0, max_per_customer=1) is None

        # Exported before the forget: these files must be purged of the customer later.
        export_events(store, out, progress=False)
        exported_before = exported(out)

        second = [
            pb_event(forgotten_id, pb.EVENT_TYPE_PURCHASE, "P000003", amount=3.0),
            pb_event(forgotten_id, pb.EVENT_TYPE_CLICK, "P000004"),
            pb_event(forgotten_id, pb.EVENT_TYPE_OFFER_CLICK, offer_id=offers[0]),
            pb_event(kept_id, pb.EVENT_TYPE_VIEW, "P000005"),
        ]
        s.track(*second)
        in_stream = [e.event_id for e in second if e.customer_id == forgotten_id]
        kept_ids = {e.event_id for e in first + second if e.customer_id == kept_id}

        data_before = json.loads(s.export_data(forgotten_id).json)
        keys_before = customer_keys(store, forgotten_id)
        reply = s.forget(forgotten_id)
        k = store.keys
        stream_after = stream_events(store)  # before the export below drains the stream
        dedupe_after = {e.event_id: int(store.writer.exists(k.dedupe(e.event_id))) for e in second}
        report = export_events(store, out, progress=False)
        return Forgotten(
            namespace=s.namespace,
            redis_url=embedded_redis.url,
            world_files=world_files,
            forgotten=forgotten_id,
            kept=kept_id,
            offers=offers,
            keys_before=keys_before,
            stream_ids_in_stream=in_stream,
            kept_event_ids=kept_ids,
            exported_before=exported_before,
            exported_after=exported(out),
            purged=report.purged,
            data_before=data_before,
            data_after=json.loads(s.export_data(forgotten_id).json),
            reply=reply,
            keys_after=customer_keys(store, forgotten_id),
            kept_keys_after=customer_keys(store, kept_id),
            usage_after=usage_hashes(store),
            stream_after=stream_after,
            dedupe_after=dedupe_after,
            tombstones=fp.tombstones(store),
            profile_after=s.profile(forgotten_id),
            loaded_points=loaded.points,
        )


def test_forget_answers_what_was_removed(forgotten: Forgotten) -> None:
    # profile, loyalty, recent, purchased, activity and today's offer impressions
    assert len(forgotten.keys_before) == 6, forgotten.keys_before
    assert forgotten.reply.keys_removed == len(forgotten.keys_before)
    assert forgotten.reply.events_removed == len(forgotten.stream_ids_in_stream) == 3
    assert forgotten.reply.tombstoned


def test_forget_leaves_no_key_of_the_customer(forgotten: Forgotten) -> None:
    assert forgotten.keys_after == []
    # The other customer's keys stay: profile, recent, purchased, activity, impressions.
    suffixes = sorted(key.rsplit("}:", 1)[1].split(":")[0] for key in forgotten.kept_keys_after)
    assert suffixes == ["activity", "offers", "profile", "purchased", "recent"]
    assert not forgotten.profile_after.known


def test_forget_removes_the_customer_from_offer_usage(forgotten: Forgotten) -> None:
    who = forgotten.forgotten
    usage = forgotten.usage_after
    assert len(usage) == 2
    mentions = {
        key: {f: v for f, v in fields.items() if who in f or v == who}
        for key, fields in usage.items()
    }
    assert mentions == {key: {} for key in usage}
    kept = [fields for fields in usage.values() if fields.get(f"c:{forgotten.kept}") == "1"]
    assert len(kept) == 1


def test_forget_removes_stream_entries_and_dedupe_keys(forgotten: Forgotten) -> None:
    assert all(e.customer_id != forgotten.forgotten for e in forgotten.stream_after)
    # The other customer's event still in the stream (the earlier ones were exported).
    assert [e.customer_id for e in forgotten.stream_after] == [forgotten.kept]
    assert {i: forgotten.dedupe_after[i] for i in forgotten.stream_ids_in_stream} == {
        i: 0 for i in forgotten.stream_ids_in_stream
    }
    assert sum(forgotten.dedupe_after.values()) == 1  # the kept customer's


def test_forget_writes_a_tombstone(forgotten: Forgotten) -> None:
    assert list(forgotten.tombstones) == [forgotten.forgotten]
    assert forgotten.tombstones[forgotten.forgotten] <= now_ms()
    assert forgotten.data_after["forgotten_at"] == forgotten.tombstones[forgotten.forgotten]


def test_export_customer_data_before_and_after(forgotten: Forgotten) -> None:
    before = forgotten.data_before
    assert before["customer_id"] == forgotten.forgotten
    assert before["profile"]["purchases"] > 0 and "tier" in before["profile"]
    assert float(before["loyalty"]["points"]) == forgotten.loaded_points + 100
    assert int(before["activity"]["counters"]["n:purchase"]) == 2
    assert {"P000001", "P000003"} <= set(before["activity"]["purchased"])
    assert before["activity"]["recent"]
    assert {e["event_id"] for e in before["events"]} == set(forgotten.stream_ids_in_stream)
    assert all(e["customer_id"] == forgotten.forgotten for e in before["events"])
    assert before["forgotten_at"] is None

    after = forgotten.data_after
    assert after["customer_id"] == forgotten.forgotten
    assert after["profile"] is None
    assert after["loyalty"] == {}
    assert after["activity"] == {"counters": {}, "recent": [], "purchased": []}
    assert after["offers"] == {}
    assert after["events"] == []
    assert isinstance(after["forgotten_at"], int)


def test_events_export_leaves_the_customer_out(forgotten: Forgotten) -> None:
    before = forgotten.exported_before
    mine = before.filter(pl.col("customer_id") == forgotten.forgotten)
    assert mine.height == 3  # exported before the forget...
    after = forgotten.exported_after
    assert forgotten.purged == mine.height  # ...and purged from those files after it
    assert forgotten.forgotten not in after["customer_id"].to_list()
    assert set(after["event_id"].to_list()) == forgotten.kept_event_ids


def test_train_leaves_out_the_forgotten_customer(
    forgotten: Forgotten, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = forgotten.world_files
    interactions = pl.read_parquet(files["interactions"])
    assert forgotten.forgotten in interactions["customer_id"].to_list()
    monkeypatch.setenv("REDIS_URL", forgotten.redis_url)
    monkeypatch.setenv("RECSVC_REDIS_NAMESPACE", forgotten.namespace)
    models = tmp_path / "models"
    argv = [
        "train",
        "--interactions",
        str(files["interactions"]),
        "--catalog",
        str(files["catalog"]),
        "--model-dir",
        str(models),
        "--baselines",
        "popularity",
        "--quiet",
        "--cold-start-fraction",
        "0",
    ]
    assert main(argv) == 0
    bundle = b.load_bundle(b.resolve(models))
    ids = set(bundle.customer_ids.to_list())
    assert forgotten.forgotten not in ids
    assert forgotten.kept in ids
    rows = interactions.filter(pl.col("customer_id") == forgotten.forgotten).height
    assert bundle.manifest["input"]["excluded_customer_rows"] == rows


def test_train_config_forget(tmp_path: Path) -> None:
    world = synth.generate(synth.SynthConfig(customers=300, products=40, seed=13))
    files = synth.write_world(world, tmp_path / "world")
    who = str(world.interactions["customer_id"][0])
    result = run(
        files["interactions"],
        tmp_path / "models",
        TrainConfig(
            progress=False, baselines=("popularity",), forget=frozenset({who}), clv_check=False
        ),
        catalog=files["catalog"],
        echo=lambda _: None,
    )
    assert who not in b.load_bundle(result.path).customer_ids.to_list()


def test_forget_core_with_the_offer_catalog(store: FeatureStore) -> None:
    """feature_store.privacy.forget given the offer ids: usage of those offers is cleared,
    including the record of which event redeemed it for whom."""
    who, other = "F-core", "F-other"
    assert fu.redeem(store, "o-a", who, "ev-a", cost=1.0) is None
    assert fu.redeem(store, "o-a", other, "ev-b", cost=1.0) is None
    fu.record_offer_events(store, [(who, "o-a", "impression", now_ms())])
    Customers(store, list).set_loyalty(who, tier="gold")
    exported_data = fp.export_customer(store, who, ["o-a"])
    assert exported_data["offers"] == {
        "o-a": {"redemptions": 1, "impressions_today": 1, "spent": 2.0}
    }
    report = fp.forget(store, who, ["o-a"])
    assert report == fp.ForgetReport(keys_removed=2, events_removed=0)
    assert customer_keys(store, who) == []
    fields = store.writer.hgetall(store.keys.offer_usage("o-a"))
    text = {as_text(f): as_text(v) for f, v in fields.items()}
    assert f"c:{who}" not in text
    assert who not in text.values()  # the per-event record names the customer too
    assert text[f"c:{other}"] == "1"


def test_export_customer_data_includes_offer_usage(forgotten: Forgotten) -> None:
    """Right of access: the redemptions and impressions held on the customer are part of it."""
    offers = forgotten.data_before["offers"]
    assert set(offers) == set(forgotten.offers)
    assert all(o["redemptions"] == 1 and o["impressions_today"] >= 1 for o in offers.values())


def test_forget_removes_impression_counters_of_other_days(store: FeatureStore) -> None:
    """An offer impression tracked with an earlier timestamp lands in that day's counter;
    forgetting the customer removes it as well (every key with the customer's hash tag)."""
    who = "F-days"
    days_ago = int((datetime.now(UTC) - timedelta(days=3)).timestamp() * 1000)
    fu.record_offer_events(store, [(who, "o-a", "impression", days_ago)])
    assert len(customer_keys(store, who)) == 1
    report = fp.forget(store, who, ["o-a"])
    assert customer_keys(store, who) == []
    assert report.keys_removed == 1


def test_offer_counts_are_kept_per_segment_too(store: FeatureStore) -> None:
    store.writer.set(store.keys.live, 1)
    for customer, segment in (("h1", "high_value"), ("h2", "high_value"), ("l1", "low_value")):
        profile = json.dumps({"segment": segment})
        store.writer.set(store.keys.profile(1, customer), profile)
    ts = int(datetime.now(UTC).timestamp() * 1000)
    fu.record_offer_events(
        store,
        [
            ("h1", "o1", "impression", ts),
            ("h2", "o1", "impression", ts),
            ("h2", "o1", "redemption", ts),
            ("l1", "o1", "impression", ts),
            ("nobody", "o1", "impression", ts),  # no loaded segment: overall counts only
        ],
    )
    _, stats = fu.offer_state(store, "h1", ["o1"])
    o1 = stats["o1"]
    assert (o1.impressions, o1.redemptions) == (4, 1)
    assert o1.by_segment == {
        "high_value": fu.OfferStats(impressions=2, redemptions=1),
        "low_value": fu.OfferStats(impressions=1),
    }

"""feature_store: the key schema, event validation and encoding, and FeatureStore against a
real Redis (the embedded redis-server), each test under a namespace of its own."""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest
from redis.crc import key_slot

from feature_store import catalog as products
from feature_store.keys import (
    DEDUPE_TTL,
    RECENT_MAX,
    SCHEMA_VERSION,
    TREND_EPOCH,
    Keys,
    decay_factor,
)
from feature_store.store import FeatureStore, RecentEvent
from formats import events as ev
from formats.events import Event, check, decode, encode
from formats.limits import MAX_FUTURE_MS
from formats.types import ProductChange

NOW_MS = int(time.time() * 1000)
DAY_MS = 86_400_000


def event(event_id: str, customer: str = "C1", type: str = "view", **fields: object) -> Event:
    values: dict[str, object] = {"product_id": "P1", "ts_ms": NOW_MS}
    if type in ev.OFFER_EVENTS:
        values = {"offer_id": "O1", "ts_ms": NOW_MS}
    values.update(fields)
    return Event(event_id, customer, type, **values)  # type: ignore[arg-type]


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- key schema -------------------------------------------------------------------------------


def test_customer_keys_share_one_hash_tag_and_slot() -> None:
    k = Keys("shop1")
    customer_keys = [*k.customer_keys("C42"), k.profile(3, "C42")]
    assert customer_keys[:3] == [k.recent("C42"), k.purchased("C42"), k.activity("C42")]
    for key in customer_keys:
        assert "{c:C42}" in key, key
        assert key.count("{") == key.count("}") == 1, key  # one hash tag, so it is the tag
    assert len({key_slot(key.encode()) for key in customer_keys}) == 1
    assert len(set(customer_keys)) == len(customer_keys)
    # Another customer's keys are other keys.
    assert not set(k.customer_keys("C43")) & set(customer_keys)


def test_event_keys_share_events_tag_and_catalog_keys_share_catalog_tag() -> None:
    k = Keys("shop1")
    # The append script's keys: one stream and a dedupe key per event, in one slot.
    event_keys = [k.stream, k.dedupe("e1"), k.dedupe("another-event")]
    assert all("{events}" in key for key in event_keys)
    assert len({key_slot(key.encode()) for key in event_keys}) == 1
    catalog_keys = [
        k.stock,
        k.price,
        k.changes,
        k.change_seq,
        k.trend(),
        k.trend("shoes"),
    ]
    assert all("{catalog}" in key for key in catalog_keys)
    assert len({key_slot(key.encode()) for key in catalog_keys}) == 1
    assert len(set(catalog_keys)) == len(catalog_keys)


def test_every_key_has_namespace_and_schema_version() -> None:
    assert SCHEMA_VERSION == 1
    for namespace in ("recsvc", "shop-eu"):
        k = Keys(namespace)
        every = [
            k.live,
            k.generation_counter,
            k.meta(2),
            k.profile(2, "C1"),
            k.product(2, "P1"),
            *k.customer_keys("C1"),
            k.stream,
            k.dedupe("e1"),
            k.trend(),
            k.stock,
            k.price,
            k.changes,
            k.change_seq,
        ]
        assert all(key.startswith(f"{namespace}:v1:") for key in every), every
        assert k.generation_pattern(2) == f"{namespace}:v1:g2:*"
        assert all(
            key.startswith(f"{namespace}:v1:g2:")
            for key in (k.meta(2), k.profile(2, "C1"), k.product(2, "P1"))
        )
    assert Keys().namespace == "recsvc"


def test_decay_factor_grows_monotonically_and_doubles_per_half_life() -> None:
    stamps = [TREND_EPOCH + d * 3600.0 for d in range(-48, 24 * 60, 7)]
    weights = [decay_factor(t) for t in stamps]
    assert all(a < b for a, b in itertools.pairwise(weights))
    assert decay_factor(TREND_EPOCH) == 1.0
    assert decay_factor(TREND_EPOCH + 7 * 86400) == pytest.approx(2.0)
    assert decay_factor(TREND_EPOCH - 7 * 86400) == pytest.approx(0.5)


# -- events.check -----------------------------------------------------------------------------

LONG = "x" * 129


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"event_id": ""}, "event_id is empty"),
        ({"event_id": "   "}, "event_id is empty"),
        ({"customer_id": ""}, "customer_id is empty"),
        ({"event_id": LONG}, "event_id is 129 characters long; the maximum is 128"),
        ({"customer_id": LONG}, "customer_id is 129 characters long; the maximum is 128"),
        ({"product_id": LONG}, "product_id is 129 characters long; the maximum is 128"),
        ({"offer_id": LONG}, "offer_id is 129 characters long; the maximum is 128"),
        ({"recommendation_id": LONG}, "recommendation_id is 129 characters long"),
        ({"type": ""}, "type is unspecified or unknown"),
        ({"type": "like"}, "type is unspecified or unknown"),
        ({"type": "purchase", "product_id": ""}, "a purchase event needs product_id"),
        ({"type": "rec_impression", "product_id": " "}, "a rec_impression event needs product_id"),
        ({"type": "offer_redeemed", "offer_id": ""}, "a offer_redeemed event needs offer_id"),
        ({"quantity": -1.0}, "quantity -1.0 is not a finite number >= 0"),
        ({"quantity": math.nan}, "quantity nan is not a finite number >= 0"),
        ({"amount": -0.01}, "amount -0.01 is not a finite number >= 0"),
        ({"amount": math.inf}, "amount inf is not a finite number >= 0"),
        ({"ts_ms": 1}, "timestamp is before 2000-01-01"),
        ({"ts_ms": ev.MIN_TS_MS - 1}, "timestamp is before 2000-01-01"),
        ({"ts_ms": -5}, "timestamp is before 2000-01-01"),
        ({"ts_ms": NOW_MS + MAX_FUTURE_MS + 1}, "more than 5 minutes in the future"),
    ],
)
def test_check_rejects(changes: dict[str, object], reason: str) -> None:
    good = Event("e1", "C1", "view", product_id="P1", offer_id="O1", ts_ms=NOW_MS)
    assert check(good, NOW_MS) is None
    found = check(replace(good, **changes), NOW_MS)  # type: ignore[arg-type]
    assert found is not None and reason in found, found


def test_check_accepts() -> None:
    accepted = [
        Event("e1", "C1", "view", product_id="P1"),  # no timestamp: the server's clock
        Event("e2", "C1", "purchase", product_id="P1", quantity=2, amount=19.9, ts_ms=NOW_MS),
        Event("e3", "C1", "offer_click", offer_id="O1", ts_ms=ev.MIN_TS_MS),
        Event("e4", "C1", "click", product_id="P1", ts_ms=NOW_MS + MAX_FUTURE_MS),
        Event("e" * 128, "C" * 128, "rec_click", product_id="P" * 128, recommendation_id="r"),
    ]
    for e in accepted:
        assert check(e, NOW_MS) is None, e
    for kind in ev.EVENT_TYPES:
        assert check(event("e", type=kind), NOW_MS) is None, kind


def test_encode_decode_round_trip() -> None:
    full = Event(
        event_id="e-1",
        customer_id="C1",
        type="purchase",
        product_id="P1",
        offer_id="O9",
        ts_ms=NOW_MS,
        quantity=2.5,
        amount=12.75,
        recommendation_id="rec-7",
    )
    minimal = Event("e-2", "C1", "offer_impression", offer_id="O1", ts_ms=NOW_MS)
    for e in (full, minimal):
        payload = encode(e)
        assert decode(payload) == e
        assert decode(payload.encode()) == e  # as redis-py returns it
    # Empty optional fields are left out of the stream entry.
    assert set(json.loads(encode(minimal))) == {"id", "c", "t", "ts", "o"}
    assert set(json.loads(encode(full))) == {"id", "c", "t", "ts", "p", "o", "q", "a", "r"}


# -- FeatureStore: events ---------------------------------------------------------------------


def stream_events(store: FeatureStore) -> list[Event]:
    return [decode(fields[b"e"]) for _, fields in store.writer.xrange(store.keys.stream)]


def test_append_events_dedupes_replays_and_duplicates_in_one_batch(
    store: FeatureStore,
) -> None:
    assert store.writer.ping()
    assert store.append_events([]) == []
    batch = [event("a"), event("b", type="purchase"), event("a"), event("c", type="offer_click")]
    ids = store.append_events(batch)
    assert [i is not None for i in ids] == [True, True, False, True]
    assert store.writer.xlen(store.keys.stream) == 3
    assert [e.event_id for e in stream_events(store)] == ["a", "b", "c"]
    assert stream_events(store) == [batch[0], batch[1], batch[3]]
    # The dedupe key remembers the stream id for DEDUPE_TTL.
    dedupe = store.keys.dedupe("a")
    assert text(store.writer.get(dedupe)) == ids[0]
    assert 0 < store.writer.ttl(dedupe) <= DEDUPE_TTL

    assert store.append_events(batch) == [None, None, None, None]  # a replay
    assert store.writer.xlen(store.keys.stream) == 3
    mixed = store.append_events([event("b"), event("d")])
    assert mixed[0] is None and mixed[1] is not None
    assert store.writer.xlen(store.keys.stream) == 4


# -- FeatureStore: activity -------------------------------------------------------------------


@pytest.mark.parametrize("pipelined", [False, True], ids=["script", "pipeline"])
def test_apply_activity_and_read_it_back(store: FeatureStore, pipelined: bool) -> None:
    store.cluster = pipelined  # a cluster applies the same updates as a pipeline
    t0 = NOW_MS - 60_000
    evs = [
        event("1", type="view", product_id="P1", ts_ms=t0 + 1),
        event("2", type="purchase", product_id="P2", ts_ms=t0 + 4, quantity=2, amount=10.5),
        event("3", type="rec_impression", product_id="P9", ts_ms=t0 + 5),
        event("4", type="rec_click", product_id="P3", ts_ms=t0 + 3),  # out of order on purpose
        event("5", type="add_to_cart", product_id="P4", ts_ms=t0 + 6),
        event("6", type="purchase", product_id="P4", ts_ms=t0 + 7, amount=4.5),
        event("7", type="offer_click", ts_ms=t0 + 8),
        event("8", customer="C2", type="click", product_id="P1", ts_ms=t0 + 2),
    ]
    store.apply_activity(evs, {"P1": "shoes", "P2": "coffee"})
    store.apply_activity([], {})  # nothing to do
    activity = store.activity("C1")
    assert activity.recent == (  # newest first; no rec_impression; rec_click is a click
        RecentEvent("purchase", "P4", t0 + 7, 0.0),
        RecentEvent("add_to_cart", "P4", t0 + 6, 0.0),
        RecentEvent("purchase", "P2", t0 + 4, 2.0),
        RecentEvent("click", "P3", t0 + 3, 0.0),
        RecentEvent("view", "P1", t0 + 1, 0.0),
    )
    assert activity.purchased == frozenset({"P2", "P4"})
    assert activity.change_seq == 0
    assert store.activity("C2").recent == (RecentEvent("click", "P1", t0 + 2, 0.0),)
    assert store.activity("C2").purchased == frozenset()
    assert store.activity("nobody").recent == ()

    counters = {
        text(k): text(v) for k, v in store.writer.hgetall(store.keys.activity("C1")).items()
    }
    assert {k: int(v) for k, v in counters.items() if k.startswith("n:")} == {
        "n:view": 1,
        "n:purchase": 2,
        "n:rec_impression": 1,
        "n:rec_click": 1,
        "n:add_to_cart": 1,
        "n:offer_click": 1,
    }
    assert float(counters["spend"]) == pytest.approx(15.0)
    assert int(counters["last_seen"]) == t0 + 8
    assert int(counters["last_purchase"]) == t0 + 7
    purchased = store.writer.zrange(store.keys.purchased("C1"), 0, -1, withscores=True)
    assert {text(p): int(s) for p, s in purchased} == {"P2": t0 + 4, "P4": t0 + 7}

    # A second batch adds to the counters and goes in front of the recent list.
    store.apply_activity([event("9", type="view", product_id="P5", ts_ms=t0 + 9)], {})
    assert store.activity("C1").recent[0] == RecentEvent("view", "P5", t0 + 9, 0.0)
    assert int(store.writer.hget(store.keys.activity("C1"), "n:view")) == 2


def test_recent_is_bounded(store: FeatureStore) -> None:
    n = RECENT_MAX + 15
    evs = [event(str(i), product_id=f"P{i}", ts_ms=NOW_MS - n + i) for i in range(n)]
    store.apply_activity(evs[:20], {})
    store.apply_activity(evs[20:], {})
    recent = store.activity("C1").recent
    assert len(recent) == RECENT_MAX
    assert [r.product_id for r in recent] == [f"P{i}" for i in reversed(range(15, n))]
    assert store.writer.llen(store.keys.recent("C1")) == RECENT_MAX


def test_trending_orders_by_decayed_weight(store: FeatureStore) -> None:
    def views(customer: str, product: str, count: int, ts_ms: int) -> list[Event]:
        return [
            event(f"{customer}-{product}-{i}", customer, "view", product_id=product, ts_ms=ts_ms)
            for i in range(count)
        ]

    categories = {"A": "shoes", "B": "shoes", "C": "coffee", "OLD": "shoes"}
    store.apply_activity(
        [
            *views("C1", "A", 3, NOW_MS),
            *views("C2", "B", 1, NOW_MS),
            *views("C3", "C", 2, NOW_MS),
            # Four views 30 days ago weigh less than one today (half-life 7 days).
            *views("C4", "OLD", 4, NOW_MS - 30 * DAY_MS),
            # Shown, not interest: no trend weight.
            event("imp", "C5", "rec_impression", product_id="IMPRESSION", ts_ms=NOW_MS),
        ],
        categories,
    )
    overall = store.trending()
    assert [p for p, _ in overall] == ["A", "C", "B", "OLD"]
    assert overall[0][1] == pytest.approx(3 * overall[2][1])
    assert [p for p, _ in store.trending("shoes")] == ["A", "B", "OLD"]
    assert [p for p, _ in store.trending("coffee")] == ["C"]
    assert [p for p, _ in store.trending(n=2)] == ["A", "C"]
    assert store.trending("no-such-category") == []


# -- FeatureStore: catalog changes --------------------------------------------------------------


def test_update_products_and_changes_since(store: FeatureStore) -> None:
    assert store.change_seq() == 0
    assert products.changes_since(store, 0) == (0, [])
    first = products.update_products(
        store, [ProductChange("P1", stock=0), ProductChange("P2", price=9.99)]
    )
    assert first == store.change_seq() == 1
    seq, changes = products.changes_since(store, 0)
    assert seq == 1
    assert sorted(changes, key=lambda c: c.product_id) == [
        ProductChange("P1", stock=0, price=None),
        ProductChange("P2", stock=None, price=9.99),
    ]
    assert products.changes_since(store, 1) == (1, [])

    second = products.update_products(
        store, [ProductChange("P1", price=1e20), ProductChange("P3", 5, 0.0)]
    )
    assert second == 2
    seq, changes = products.changes_since(store, first)
    assert seq == 2
    assert sorted(changes, key=lambda c: c.product_id) == [
        ProductChange("P1", stock=0, price=1e20),  # the stock set before is still there
        ProductChange("P3", stock=5, price=0.0),
    ]
    assert len(products.changes_since(store, 0)[1]) == 3
    assert store.activity("anyone").change_seq == 2


def test_buffered_trend_counters_are_written_by_the_flusher_and_at_close(
    store: FeatureStore,
) -> None:
    # A second client on the same namespace that sums trend increments before writing them.
    url = f"unix://{store.writer.connection_pool.connection_kwargs['path']}"
    buffered = FeatureStore(url, namespace=store.keys.namespace, trend_flush_s=3600)
    views = [event(f"b{i}", "C1", "view", product_id="A", ts_ms=NOW_MS) for i in range(3)]
    buffered.apply_activity(views, {"A": "shoes"})
    assert store.trending() == []  # summed in the process, not written yet
    assert [e.product_id for e in store.activity("C1").recent] == ["A"] * 3  # not delayed
    buffered.apply_activity(views[:1], {"A": "shoes"})
    buffered.close()  # writes what is pending
    ((product, score),) = store.trending()
    assert product == "A" and store.trending("shoes") == [("A", score)]
    single = FeatureStore(url, namespace="t-single-" + store.keys.namespace)
    single.apply_activity(views[:1], {"A": "shoes"})
    assert score == pytest.approx(4 * single.trending()[0][1])
    single.close()


def test_product_definitions_merge_and_come_back_with_changes(store: FeatureStore) -> None:
    new = ProductChange("N1", price=4.5, title="Wool hat", category="hats", attributes={"a": "1"})
    first = products.update_products(store, [new], now_ms=1_700_000_000_000)
    _, changes = products.changes_since(store, 0)
    assert changes == [
        ProductChange("N1", None, 4.5, "Wool hat", "hats", {"a": "1"}, 1_700_000_000_000)
    ]
    # Title kept, attributes merged ("" removes one), created_ms kept from the first time.
    later = ProductChange("N1", stock=3, attributes={"a": "", "b": "x y"})
    products.update_products(store, [later], now_ms=1_800_000_000_000)
    _, changes = products.changes_since(store, first)
    assert changes == [
        ProductChange("N1", 3, 4.5, "Wool hat", "hats", {"b": "x y"}, 1_700_000_000_000)
    ]
    products.update_products(store, [ProductChange("P9", stock=1)])  # a plain stock change
    listed = products.described_products(store)
    assert list(listed) == ["N1"] and listed["N1"].stock == 3
    assert products.described_count(store) == 1
    assert products.changes_since(store, 0)[1][-1] == ProductChange("P9", 1)


def test_the_embedded_redis_fsyncs_before_it_replies_unless_told_otherwise(
    tmp_path: Path,
) -> None:
    import redis as redis_py

    from feature_store.connection import RedisSettings, SettingsError
    from feature_store.embedded import start_embedded

    assert RedisSettings.from_env(tmp_path, {}).fsync == "always"
    assert RedisSettings.from_env(tmp_path, {"RECSVC_REDIS_FSYNC": "everysec"}).fsync == "everysec"
    with pytest.raises(SettingsError, match="RECSVC_REDIS_FSYNC"):
        RedisSettings.from_env(tmp_path, {"RECSVC_REDIS_FSYNC": "no"})
    for policy in ("always", "everysec"):
        embedded = start_embedded(tmp_path / policy, fsync=policy)
        try:
            client = redis_py.Redis.from_url(embedded.url)
            assert client.config_get("appendfsync") == {"appendfsync": policy}
            client.close()
        finally:
            embedded.close()


def test_profile_key_splits_around_the_generation() -> None:
    k = Keys("shop")
    head, tail = k.profile_around_generation("C:g7:x")
    assert head + "12" + tail == k.profile(12, "C:g7:x")

"""recsvc.realtime.Realtime on the trained test bundle and a real Redis: event tracking, the
real-time effect of events on recommendations, catalog changes, and serving without Redis."""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path

import numpy as np
import pytest
from grpc_helpers import new_id, now_ms
from redis_fixtures import READ_TIMEOUT_S, RedisProcess
from serving_fixtures import free_port, trained

from feature_store.embedded import EmbeddedRedis
from feature_store.store import Activity, FeatureStore
from formats.errors import InvalidRequest, NotFound, Unavailable
from formats.events import Event
from formats.types import EventResult, Filter, ProductChange, Recommendation
from recsvc.engine import Engine
from recsvc.realtime import MAX_EVENTS, Realtime


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained(tmp_path_factory, "exact")


@pytest.fixture
def engine(bundle_path: Path) -> Engine:
    """A fresh engine per test: catalog changes modify it in place."""
    return Engine.load(bundle_path)


@pytest.fixture
def realtime(store: FeatureStore) -> Realtime:
    return Realtime(store)


def events_of(customer: str, products: list[str], type: str = "purchase") -> list[Event]:
    ts = now_ms()
    return [Event(new_id(), customer, type, product_id=p, ts_ms=ts, amount=1.0) for p in products]


def categories(rec: Recommendation) -> Counter[str]:
    return Counter(i.category for i in rec.items)


def product_ids(rec: Recommendation) -> set[str]:
    return {i.product_id for i in rec.items}


def ordinary_customer(engine: Engine) -> str:
    """The first trained customer with a handful of products in their history: one long
    history outweighs five new purchases, as it should."""
    sizes = np.diff(engine.user_items.indptr)
    for customer, row in engine.customer_index.items():
        if 4 <= sizes[row] <= 12 and np.any(engine.user_factors[row]):
            return str(customer)
    raise AssertionError("no customer with 4..12 products")


def popular_in(
    engine: Engine, category: str, n: int, skip: AbstractSet[str] = frozenset()
) -> list[str]:
    code = engine.catalog.category_code[category]
    ids = [engine.catalog.product_ids[i] for i in engine.catalog.popular_by_category[code].tolist()]
    return [p for p in ids if p not in skip][:n]


def history(engine: Engine, customer: str) -> set[str]:
    return {engine.catalog.product_ids[i] for i in engine._history(engine.customer_index[customer])}


def activity_counters(store: FeatureStore, customer: str) -> dict[str, str]:
    raw = store.writer.hgetall(store.keys.activity(customer))
    return {k.decode(): v.decode() for k, v in raw.items()}


# -- tracking -----------------------------------------------------------------------------------


def test_bad_events_are_rejected_and_the_good_ones_accepted(
    realtime: Realtime,
    engine: Engine,
    store: FeatureStore,
) -> None:
    customer = ordinary_customer(engine)
    good = events_of(customer, ["P000001", "P000002"], "view")
    batch = [
        good[0],
        Event(new_id(), customer, "purchase"),  # no product_id
        Event(new_id(), customer, "view", product_id="P000003", ts_ms=now_ms() + 3_600_000),
        good[1],
        Event("", customer, "view", product_id="P000004"),
    ]
    results = realtime.track(engine, batch)
    assert [r.status for r in results] == [
        "accepted",
        "rejected",
        "rejected",
        "accepted",
        "rejected",
    ]
    assert [r.event_id for r in results] == [e.event_id for e in batch]
    assert "needs product_id" in results[1].reason
    assert "future" in results[2].reason
    assert "event_id is empty" in results[4].reason
    assert results[0].reason == results[3].reason == ""
    assert store.writer.xlen(store.keys.stream) == 2
    counters = activity_counters(store, customer)
    assert counters["n:view"] == "2"

    replay = realtime.track(engine, batch)
    assert [r.status for r in replay] == [
        "duplicate",
        "rejected",
        "rejected",
        "duplicate",
        "rejected",
    ]
    assert store.writer.xlen(store.keys.stream) == 2
    assert activity_counters(store, customer) == counters  # replays count nothing
    recent = store.activity(customer).recent
    assert [r.product_id for r in recent] == ["P000002", "P000001"]


def test_events_without_timestamp_get_the_server_clock(
    realtime: Realtime,
    engine: Engine,
    store: FeatureStore,
) -> None:
    before = now_ms()
    realtime.track(engine, [Event("e-no-ts", "C-ts", "click", product_id="P000001")])
    [entry] = store.activity("C-ts").recent
    assert before <= entry.ts_ms <= now_ms()


def test_batch_size_limits(
    realtime: Realtime,
    engine: Engine,
    store: FeatureStore,
) -> None:
    with pytest.raises(InvalidRequest, match="events is empty"):
        realtime.track(engine, [])
    too_many = events_of("C-big", ["P000001"] * (MAX_EVENTS + 1), "view")
    with pytest.raises(InvalidRequest, match=f"{MAX_EVENTS + 1} events; at most {MAX_EVENTS}"):
        realtime.track(engine, too_many)
    assert store.writer.xlen(store.keys.stream) == 0
    results = realtime.track(engine, too_many[:MAX_EVENTS])
    assert [r.status for r in results] == ["accepted"] * MAX_EVENTS


def test_without_a_feature_store(engine: Engine) -> None:
    degraded: list[int] = []
    realtime = Realtime(None, on_degraded=lambda: degraded.append(1))
    assert not realtime.available
    assert realtime.activity(engine, "C0000001") is None
    realtime.sync_catalog(engine)
    assert degraded == []  # none configured is no outage
    with pytest.raises(Unavailable, match="no feature store"):
        realtime.track(engine, events_of("C0000001", ["P000001"]))
    # Nothing valid to store: answered without a store.
    assert realtime.track(engine, [Event("e", "C0000001", "view")]) == [
        EventResult("e", "rejected", "a view event needs product_id")
    ]
    with pytest.raises(Unavailable):
        realtime.update_products(engine, [ProductChange("P000001", stock=1)])


# -- the real-time effect -----------------------------------------------------------------------


def test_purchases_move_recommendations_toward_their_category(
    realtime: Realtime, engine: Engine
) -> None:
    customer = ordinary_customer(engine)
    before = engine.recommend(customer, 20, activity=realtime.activity(engine, customer))
    assert before.personalized
    shown = categories(before)
    # The category least present now, with enough products the customer never bought.
    target = min(engine.catalog.category_names, key=lambda c: (shown[c], c))
    bought = popular_in(engine, target, 5, skip=history(engine, customer) | product_ids(before))
    assert len(bought) == 5

    results = realtime.track(engine, events_of(customer, bought))
    assert {r.status for r in results} == {"accepted"}
    activity = realtime.activity(engine, customer)
    assert activity is not None and set(bought) <= activity.purchased

    after = engine.recommend(customer, 20, activity=activity)
    assert after.personalized
    assert categories(after)[target] > shown[target], (target, shown, categories(after))
    assert not set(bought) & product_ids(after)  # bought now: not recommended back
    with_bought = engine.recommend(customer, 20, Filter(include_purchased=True), activity=activity)
    assert set(bought) & product_ids(with_bought)
    # Without the activity (Redis down), the answer is the model's alone, as before.
    assert categories(engine.recommend(customer, 20, activity=None)) == shown


def test_new_customer_is_personalized_after_a_few_events(
    realtime: Realtime, engine: Engine
) -> None:
    customer = "new-" + new_id()
    assert customer not in engine.customer_index
    before = engine.recommend(customer, 20, activity=realtime.activity(engine, customer))
    assert not before.personalized
    assert not engine.rank(customer, ["P000001", "P000002"]).personalized

    sizes = Counter(engine.catalog.category_names[c] for c in engine.catalog.category.tolist())
    target = sizes.most_common(1)[0][0]  # plenty of products left to recommend
    touched = popular_in(engine, target, 4)
    events = [
        *events_of(customer, touched[:2], "view"),
        *events_of(customer, touched[2:3], "add_to_cart"),
        *events_of(customer, touched[3:], "purchase"),
    ]
    assert {r.status for r in realtime.track(engine, events)} == {"accepted"}

    activity = realtime.activity(engine, customer)
    after = engine.recommend(customer, 20, activity=activity)
    assert after.personalized
    assert categories(after)[target] >= 10, categories(after)
    assert categories(after)[target] > categories(before)[target]
    assert touched[3] not in product_ids(after)  # the purchase
    assert all(i.reason.startswith("because you liked") for i in after.items)
    assert engine.rank(customer, ["P000001", "P000002"], activity).personalized


# -- catalog changes ----------------------------------------------------------------------------


@pytest.fixture
def other_worker(
    embedded_redis: EmbeddedRedis,
    store: FeatureStore,
    bundle_path: Path,
) -> Iterator[tuple[Engine, Realtime]]:
    """Another server process: its own engine and Redis clients, the same namespace."""
    fs = FeatureStore(
        embedded_redis.url, namespace=store.keys.namespace, read_timeout_s=READ_TIMEOUT_S
    )
    yield Engine.load(bundle_path), Realtime(fs)
    fs.close()


def test_out_of_stock_vanishes_here_and_in_another_worker(
    realtime: Realtime,
    engine: Engine,
    other_worker: tuple[Engine, Realtime],
    bundle_path: Path,
) -> None:
    customer = ordinary_customer(engine)
    in_stock = Filter(in_stock_only=True)
    before = engine.recommend(customer, 20, in_stock, activity=realtime.activity(engine, customer))
    gone = before.items[0].product_id

    assert realtime.update_products(engine, [ProductChange(gone, stock=0)]) == 1
    after = engine.recommend(customer, 20, in_stock, activity=realtime.activity(engine, customer))
    assert gone not in product_ids(after) and len(after.items) == 20
    # Without the stock filter it may still be recommended.
    assert gone in product_ids(engine.recommend(customer, 20, activity=None))

    engine2, realtime2 = other_worker
    assert engine2.recommend(customer, 20, in_stock).items[0].product_id == gone  # not synced
    seen = engine2.recommend(customer, 20, in_stock, activity=realtime2.activity(engine2, customer))
    assert gone not in product_ids(seen)

    # SimilarProducts syncs with one GET (sync_catalog): a third engine.
    engine3 = Engine.load(bundle_path)
    seed = before.items[1].product_id
    similar_before = engine3.similar(seed, 199, in_stock)
    assert gone in product_ids(similar_before)
    realtime2.sync_catalog(engine3)
    assert gone not in product_ids(engine3.similar(seed, 199, in_stock))

    # Back in stock: every worker sees it on its next request.
    assert realtime2.update_products(engine2, [ProductChange(gone, stock=3)]) == 1
    again = engine.recommend(customer, 20, in_stock, activity=realtime.activity(engine, customer))
    assert again.items[0].product_id == gone


def test_price_changes_apply_to_price_filters(
    realtime: Realtime, engine: Engine, other_worker: tuple[Engine, Realtime]
) -> None:
    customer = ordinary_customer(engine)
    ceiling = float(np.nanmax(engine.catalog.price)) + 1.0
    cheap = Filter(max_price=ceiling)
    before = engine.recommend(customer, 20, cheap, activity=realtime.activity(engine, customer))
    pricey = before.items[0].product_id
    unpriced = engine.catalog.product_ids[int(np.flatnonzero(np.isnan(engine.catalog.price))[0])]
    everything = engine.recommend("C-new", 200, cheap, activity=realtime.activity(engine, "C-new"))
    assert unpriced not in product_ids(everything)  # no price fails every price bound

    changes = [ProductChange(pricey, price=ceiling + 100.0), ProductChange(unpriced, price=2.5)]
    assert realtime.update_products(engine, changes) == 2
    engine2, realtime2 = other_worker
    for e, rt in ((engine, realtime), (engine2, realtime2)):
        after = e.recommend(customer, 20, cheap, activity=rt.activity(e, customer))
        assert pricey not in product_ids(after)
        everything = e.recommend("C-new", 200, cheap, activity=rt.activity(e, "C-new"))
        assert unpriced in product_ids(everything)
        assert pricey not in product_ids(everything)
        expensive = e.recommend("C-new", 200, Filter(min_price=ceiling), activity=None)
        assert product_ids(expensive) == {pricey}


def test_update_products_validation(
    realtime: Realtime,
    engine: Engine,
    store: FeatureStore,
) -> None:
    ok = ProductChange("P000001", stock=1)
    bad: list[tuple[ProductChange, type[Exception], str]] = [
        (ProductChange("P-missing", stock=1), NotFound, "'P-missing' is not in the catalog"),
        (ProductChange("", stock=1), InvalidRequest, "product_id is empty"),
        (ProductChange("P000001", stock=-1), InvalidRequest, "stock -1 of 'P000001' is outside"),
        (ProductChange("P000001", stock=2**63 - 1), InvalidRequest, "is outside 0..1,000,000,000"),
        (ProductChange("P000001", price=1e308), InvalidRequest, "price 1e"),
        (ProductChange("P000001", price=math.nan), InvalidRequest, "price nan"),
        (ProductChange("P000001", price=math.inf), InvalidRequest, "price inf"),
        (ProductChange("P000001", price=-0.5), InvalidRequest, "price -0.5"),
        (ProductChange("P000001"), InvalidRequest, "sets nothing; send stock, price, title"),
        (ProductChange("P-missing", title="x"), NotFound, "send its category to create it"),
        (ProductChange("N" * 129, category="c"), InvalidRequest, "129 characters long"),
        (ProductChange("N1", category=" "), InvalidRequest, "category of 'N1' is empty"),
        (ProductChange("N1", category="c", title="t" * 1001), InvalidRequest, "title of 'N1'"),
        (ProductChange("N1", category="c", attributes={"price": "1"}), InvalidRequest, "own"),
        (ProductChange("N1", category="c", attributes={"": "1"}), InvalidRequest, "empty"),
        (ProductChange("N1", category="c", price=-1.0), InvalidRequest, "price -1"),
        (ProductChange("P000001", category="elsewhere"), InvalidRequest, "next training run"),
    ]
    for change, error, message in bad:
        with pytest.raises(error, match=message):
            realtime.update_products(engine, [ok, change])  # all or nothing
    with pytest.raises(InvalidRequest, match="updates is empty"):
        realtime.update_products(engine, [])
    with pytest.raises(InvalidRequest, match="1001 updates; at most 1000"):
        realtime.update_products(engine, [ok] * 1001)
    assert store.change_seq() == 0 and engine.catalog.change_seq == 0
    assert realtime.update_products(engine, [ok, ok, ProductChange("P000002", price=0.0)]) == 2
    assert store.change_seq() == engine.catalog.change_seq == 1


# -- serving without Redis ----------------------------------------------------------------------


def test_outage_is_logged_once_and_counted(
    engine: Engine,
    redis_process: RedisProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fs = FeatureStore(redis_process.url, namespace="t" + new_id(), read_timeout_s=READ_TIMEOUT_S)
    outages: list[int] = []
    degraded: list[int] = []
    realtime = Realtime(  # retry on every call: no waiting for the retry interval
        fs,
        on_degraded=lambda: degraded.append(1),
        on_outage=lambda: outages.append(1),
        retry_interval=0.0,
    )
    customer = ordinary_customer(engine)
    assert realtime.activity(engine, customer) is not None and realtime.available
    caplog.set_level(logging.WARNING, logger="recsvc.realtime")

    redis_process.kill()
    for _ in range(20):
        assert realtime.activity(engine, customer) is None
        realtime.sync_catalog(engine)
        with pytest.raises(Unavailable, match="nothing in this call was stored"):
            realtime.track(engine, events_of(customer, ["P000001"]))
        with pytest.raises(Unavailable):
            realtime.update_products(engine, [ProductChange("P000001", stock=1)])
    assert not realtime.available
    assert (len(outages), len(degraded)) == (1, 40)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("feature store unavailable" in m for m in messages) == 1, messages
    # Recommendations go on from the model alone.
    assert engine.recommend(customer, 10, activity=None).personalized

    redis_process.start()  # same port, same data
    results = realtime.track(engine, events_of(customer, ["P000001"]))
    assert [r.status for r in results] == ["accepted"]
    activity = realtime.activity(engine, customer)
    assert activity is not None and "P000001" in activity.purchased
    assert realtime.available
    messages = [r.getMessage() for r in caplog.records]
    assert sum("feature store unavailable" in m for m in messages) == 1, messages
    assert sum("feature store back" in m for m in messages) == 1, messages
    fs.close()


def test_nothing_listening_is_an_outage_not_an_error(engine: Engine) -> None:
    fs = FeatureStore(f"redis://127.0.0.1:{free_port()}", namespace="t" + new_id())
    realtime = Realtime(fs, retry_interval=60.0)
    customer = ordinary_customer(engine)
    for _ in range(3):
        activity = realtime.activity(engine, customer)
        assert activity is None
        assert engine.recommend(customer, 5, activity=activity).personalized
    with pytest.raises(Unavailable):
        realtime.track(engine, events_of(customer, ["P000001"]))
    fs.close()


def test_a_product_id_with_a_separator_does_not_break_reads(
    realtime: Realtime, engine: Engine
) -> None:
    customer = ordinary_customer(engine)
    [result] = realtime.track(engine, events_of(customer, ["P|odd"], "view"))
    activity = realtime.activity(engine, customer)
    assert activity is not None
    if result.status == "accepted":  # either stored and read back whole ...
        assert [r.product_id for r in activity.recent] == ["P|odd"]
    else:  # ... or refused up front
        assert result.status == "rejected" and "product_id" in result.reason
    assert engine.recommend(customer, 10, activity=activity).personalized


class HeldStore(FeatureStore):
    """Reads Redis for real; a read by the thread named "held" then waits for ``release``."""

    def __init__(self, url: str) -> None:
        super().__init__(url, namespace="t" + new_id(), read_timeout_s=READ_TIMEOUT_S)
        self.reading = threading.Event()
        self.release = threading.Event()

    def activity(self, customer_id: str) -> Activity:
        result = super().activity(customer_id)
        if threading.current_thread().name == "held":
            self.reading.set()
            assert self.release.wait(10)
        return result


def test_a_read_in_flight_when_redis_dies_does_not_end_the_outage(
    engine: Engine, redis_process: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    fs = HeldStore(redis_process.url)
    outages: list[int] = []
    realtime = Realtime(fs, on_outage=lambda: outages.append(1))
    customer = ordinary_customer(engine)
    caplog.set_level(logging.WARNING, logger="recsvc.realtime")
    held = threading.Thread(target=realtime.activity, args=(engine, customer), name="held")
    held.start()
    try:
        assert fs.reading.wait(10)  # its reply is in; it returns after Redis is gone
        redis_process.kill()
        assert realtime.activity(engine, customer) is None  # the outage starts here
    finally:
        fs.release.set()
        held.join(10)
    assert not realtime.available  # the held read's late success does not end the outage
    assert realtime.activity(engine, customer) is None
    assert len(outages) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("feature store unavailable" in m for m in messages) == 1, messages
    fs.close()

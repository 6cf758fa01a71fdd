"""The serving core without gRPC: recommend, similar, rank and info on a trained bundle.

Every filtered answer is checked against a brute-force reading of the contract
(proto/recsvc/v1/recommender.proto) over the bundle's own product table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from serving_fixtures import NO_PRICE_EVERY, trained

from formats import bundle as b
from formats.errors import InvalidRequest, NotFound
from formats.types import Context, Filter, Recommendation
from recsvc.engine import Engine, EngineConfig

UNKNOWN = "C-not-a-customer"


@dataclass(frozen=True)
class Product:
    id: str
    category: str
    price: float | None
    in_stock: bool
    popularity: float


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> b.Bundle:
    return b.load_bundle(trained(tmp_path_factory, "exact"))


@pytest.fixture(scope="module")
def engine(bundle: b.Bundle) -> Engine:
    return Engine(bundle)


@pytest.fixture(scope="module", params=["exact", "hnsw", "item2item", "blend", "item2vec"])
def any_engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """The exact-index engine, one whose bundle was forced onto an HNSW index, and ones
    serving the item-to-item model alone or blended with ALS: every filter, fill and
    exclusion rule holds whichever model serves (item2vec: similar products)."""
    engine = Engine.load(trained(tmp_path_factory, str(request.param)))
    if request.param in ("exact", "hnsw"):
        assert engine.info().index_kind == request.param
        assert engine.item2item is None and engine.item2vec is None
    elif request.param == "item2vec":
        assert engine.item2vec is not None and engine.serving["similar"] == "item2vec"
    else:
        assert engine.item2item is not None and engine.manifest["model"] == request.param
    return engine


# -- brute force ----------------------------------------------------------------------------


def catalog(engine: Engine) -> dict[str, Product]:
    rows = engine.bundle.products.select(
        "product_id", "category", "price", "in_stock", "popularity"
    ).to_dicts()
    return {
        r["product_id"]: Product(
            r["product_id"],
            r["category"] if r["category"] is not None else "uncategorized",
            r["price"],
            True if r["in_stock"] is None else bool(r["in_stock"]),
            float(r["popularity"]),
        )
        for r in rows
    }


def history(engine: Engine, customer: str) -> list[str]:
    ids = engine.bundle.customer_ids.to_list()
    if customer not in ids:
        return []
    m = engine.bundle.user_items
    row = ids.index(customer)
    return [engine.catalog.product_ids[i] for i in m.indices[m.indptr[row] : m.indptr[row + 1]]]


def passes(p: Product, f: Filter) -> bool:
    if f.include_categories and p.category not in f.include_categories:
        return False
    if p.category in f.exclude_categories or p.id in f.exclude_product_ids:
        return False
    if f.in_stock_only and not p.in_stock:
        return False
    if f.min_price is not None and (p.price is None or p.price < f.min_price):
        return False
    return not (f.max_price is not None and (p.price is None or p.price > f.max_price))


def eligible(
    engine: Engine,
    f: Filter,
    customer: str | None = None,
    current: str = "",
    repeat: frozenset[str] = frozenset(),
) -> dict[str, Product]:
    """Every product the contract allows in an answer to this request."""
    products = catalog(engine)
    hidden = {current}
    if customer is not None and not f.include_purchased:
        hidden |= {p for p in history(engine, customer) if products[p].category not in repeat}
    return {pid: p for pid, p in products.items() if pid not in hidden and passes(p, f)}


def expected_count(allowed: dict[str, Product], limit: int, cap: int) -> int:
    per_category = Counter(p.category for p in allowed.values())
    available = sum(min(n, cap) if cap else n for n in per_category.values())
    return min(limit, available)


def check(
    engine: Engine,
    rec: Recommendation,
    allowed: dict[str, Product],
    limit: int,
    cap: int = 0,
) -> list[str]:
    ids = [i.product_id for i in rec.items]
    assert len(ids) == len(set(ids)), f"duplicate products in {ids}"
    products = catalog(engine)
    assert [pid for pid in ids if pid not in allowed] == [], "products the filter forbids"
    assert [i.category for i in rec.items] == [products[pid].category for pid in ids]
    if cap:
        assert max(Counter(i.category for i in rec.items).values(), default=0) <= cap
    assert len(ids) == expected_count(allowed, limit, cap), "fewer items than eligible products"
    assert rec.model_version == engine.version
    return ids


def heavy_customer(engine: Engine) -> str:
    """The customer with the longest history."""
    m = engine.bundle.user_items
    counts = np.diff(m.indptr)
    return str(engine.bundle.customer_ids[int(np.argmax(counts))])


def light_customer(engine: Engine) -> str:
    """A customer with exactly one product in their history and a non-zero vector."""
    m = engine.bundle.user_items
    counts = np.diff(m.indptr)
    for row in np.flatnonzero(counts == 1):
        if np.any(engine.user_factors[row]):
            return str(engine.bundle.customer_ids[int(row)])
    raise AssertionError("no customer with a single product")


def customer_with_history_in(engine: Engine, category: str) -> str:
    """A customer who had products of ``category`` and of other categories."""
    products = catalog(engine)
    best, best_n = "", 0
    for customer in engine.bundle.customer_ids.to_list()[:500]:
        cats = [products[p].category for p in history(engine, customer)]
        n = cats.count(category)
        if n > best_n and len(cats) > n:
            best, best_n = customer, n
    assert best, f"no customer bought {category}"
    return best


def customer_of(engine: Engine, role: str) -> str:
    if role == "unknown":
        return UNKNOWN
    return heavy_customer(engine) if role == "heavy" else light_customer(engine)


# -- recommend ------------------------------------------------------------------------------


def test_known_customer_gets_their_own_best_unseen_products(engine: Engine) -> None:
    customer = heavy_customer(engine)
    seen = set(history(engine, customer))
    assert len(seen) > 10
    rec = engine.recommend(customer, 10)
    assert rec.personalized
    row = engine.customer_index[customer]
    scores = engine.item_factors @ engine.user_factors[row]
    ranked = [engine.catalog.product_ids[i] for i in np.argsort(-scores, kind="stable")]
    assert [i.product_id for i in rec.items] == [p for p in ranked if p not in seen][:10]
    assert all(i.reason.startswith("because you liked ") for i in rec.items)
    assert not seen & {i.product_id for i in rec.items}
    popular = engine.recommend(UNKNOWN, 10)
    assert [i.product_id for i in rec.items] != [i.product_id for i in popular.items]


def test_include_purchased_lets_history_back_in(engine: Engine) -> None:
    customer = heavy_customer(engine)
    seen = set(history(engine, customer))
    everything = engine.recommend(customer, 200, Filter(include_purchased=True))
    assert {i.product_id for i in everything.items} == set(engine.catalog.product_ids)
    unseen = engine.recommend(customer, 200)
    assert {i.product_id for i in unseen.items} == set(engine.catalog.product_ids) - seen


def test_repeat_purchase_categories_are_never_excluded_as_purchased(bundle: b.Bundle) -> None:
    repeat = frozenset({"coffee"})
    engine = Engine(bundle, EngineConfig(repeat_categories=repeat))
    customer = customer_with_history_in(engine, "coffee")
    products = catalog(engine)
    bought = history(engine, customer)
    bought_coffee = {p for p in bought if products[p].category == "coffee"}
    bought_other = set(bought) - bought_coffee
    coffee = {p for p, prod in products.items() if prod.category == "coffee"}

    rec = engine.recommend(customer, 200, Filter(include_categories=repeat))
    assert {i.product_id for i in rec.items} == coffee  # bought coffee comes back
    plain = Engine(bundle).recommend(customer, 200, Filter(include_categories=repeat))
    assert {i.product_id for i in plain.items} == coffee - bought_coffee

    everything = engine.recommend(customer, 200)
    ids = {i.product_id for i in everything.items}
    assert bought_coffee <= ids
    assert not ids & bought_other
    check(engine, everything, eligible(engine, Filter(), customer, repeat=repeat), 200)


def test_unknown_customer_gets_the_most_popular_eligible_products(engine: Engine) -> None:
    for f in (Filter(), Filter(in_stock_only=True, exclude_categories=frozenset({"shoes"}))):
        rec = engine.recommend(UNKNOWN, 15, f)
        assert not rec.personalized
        allowed = eligible(engine, f)
        check(engine, rec, allowed, 15)
        top = sorted((p.popularity for p in allowed.values()), reverse=True)[:15]
        assert [catalog(engine)[i.product_id].popularity for i in rec.items] == top
        assert all(i.reason.startswith("popular in ") for i in rec.items)


FILTERS: dict[str, Filter] = {
    "none": Filter(),
    "include": Filter(include_categories=frozenset({"coffee", "snacks"})),
    "include_unknown_category": Filter(include_categories=frozenset({"coffee", "no-such"})),
    "exclude_categories": Filter(exclude_categories=frozenset({"electronics", "baby"})),
    "exclude_ids": Filter(
        exclude_product_ids=frozenset({f"P{n:06d}" for n in range(1, 201, 3)} | {"P-unknown"})
    ),
    "in_stock": Filter(in_stock_only=True),
    "price_range": Filter(min_price=20.0, max_price=80.0),
    "min_price": Filter(min_price=100.0),
    "max_price": Filter(max_price=10.0),
    "include_purchased": Filter(include_purchased=True),
    "cap": Filter(max_per_category=2),
    "combined": Filter(
        include_categories=frozenset({"shoes", "electronics", "baby"}),
        exclude_categories=frozenset({"baby"}),
        exclude_product_ids=frozenset({f"P{n:06d}" for n in range(1, 201, 5)}),
        in_stock_only=True,
        min_price=30.0,
        max_price=150.0,
        max_per_category=12,
    ),
    "nothing": Filter(include_categories=frozenset({"no-such"})),
}


@pytest.mark.parametrize("role", ["heavy", "light", "unknown"])
@pytest.mark.parametrize("name", list(FILTERS))
def test_every_filter_is_honoured_and_the_limit_filled(
    any_engine: Engine, name: str, role: str
) -> None:
    f = FILTERS[name]
    customer = customer_of(any_engine, role)
    current = "P000110"
    rec = any_engine.recommend(customer, 20, f, Context(current_product_id=current))
    assert rec.personalized == (role != "unknown")
    allowed = eligible(any_engine, f, customer, current=current)
    ids = check(any_engine, rec, allowed, 20, f.max_per_category)
    assert current not in ids
    if name == "nothing":
        assert ids == []


def test_products_without_a_price_fail_every_price_bound(engine: Engine) -> None:
    unpriced = {p.id for p in catalog(engine).values() if p.price is None}
    assert len(unpriced) == len(range(0, 200, NO_PRICE_EVERY))
    for f in (Filter(min_price=0.0), Filter(max_price=1e9)):
        for customer in (heavy_customer(engine), UNKNOWN):
            rec = engine.recommend(customer, 200, f)
            assert not unpriced & {i.product_id for i in rec.items}
    rec = engine.recommend(UNKNOWN, 200)
    assert unpriced <= {i.product_id for i in rec.items}


@pytest.mark.parametrize("role", ["heavy", "unknown"])
def test_a_narrow_filter_returns_exactly_the_few_eligible_products(
    any_engine: Engine, role: str
) -> None:
    f = Filter(include_categories=frozenset({"coffee", "snacks"}), max_price=6.0)
    customer = customer_of(any_engine, role)
    allowed = eligible(any_engine, f, customer)
    assert 0 < len(allowed) < 20
    rec = any_engine.recommend(customer, 20, f)
    assert {i.product_id for i in rec.items} == set(allowed)
    assert len(rec.items) == len(allowed)
    # The same without a category filter (the index path rather than direct scoring).
    g = Filter(exclude_categories=frozenset({"electronics", "shoes", "baby"}), max_price=6.0)
    assert set(eligible(any_engine, g, customer)) == set(allowed)
    rec = any_engine.recommend(customer, 20, g)
    assert {i.product_id for i in rec.items} == set(allowed)


def test_category_cap_from_the_server_default_and_from_the_request(bundle: b.Bundle) -> None:
    engine = Engine(bundle, EngineConfig(max_per_category=3))
    n_categories = len(set(catalog(engine)[p].category for p in engine.catalog.product_ids))
    for customer in (heavy_customer(engine), UNKNOWN):
        rec = engine.recommend(customer, 20)
        check(engine, rec, eligible(engine, Filter(), customer), 20, cap=3)
        assert len(rec.items) == min(20, 3 * n_categories)
        one = engine.recommend(customer, 20, Filter(max_per_category=1))
        check(engine, one, eligible(engine, Filter(), customer), 20, cap=1)
        assert len(one.items) == n_categories


def test_current_product_is_never_recommended_back(engine: Engine) -> None:
    for customer in (heavy_customer(engine), light_customer(engine), UNKNOWN):
        first = engine.recommend(customer, 5).items[0].product_id
        rec = engine.recommend(customer, 5, context=Context(current_product_id=first))
        assert first not in {i.product_id for i in rec.items}
        assert len(rec.items) == 5
    rec = engine.recommend(UNKNOWN, 5, context=Context(current_product_id="P-unknown"))
    assert len(rec.items) == 5


def test_scores_never_increase_down_a_topped_up_response(bundle: b.Bundle) -> None:
    # A shallow index search stands in for a catalog larger than max_fetch: the personalized
    # pass finds only a few eligible products and the rest come from popularity.
    engine = Engine(bundle, EngineConfig(max_fetch=8, overfetch=1))
    customer = heavy_customer(engine)
    f = Filter(exclude_categories=frozenset({"electronics", "shoes", "baby"}))
    rec = engine.recommend(customer, 10, f)
    assert rec.personalized and rec.filled_from_popularity > 0
    check(engine, rec, eligible(engine, f, customer), 10)
    scores = [i.score for i in rec.items]
    assert scores == sorted(scores, reverse=True), scores


def test_limit_default_range_and_errors(engine: Engine) -> None:
    customer = heavy_customer(engine)
    assert len(engine.recommend(customer, 0).items) == 20
    assert len(engine.recommend(UNKNOWN, 200).items) == 200
    assert len(engine.recommend(UNKNOWN, 1).items) == 1
    for bad in (201, 500, -1):
        with pytest.raises(InvalidRequest, match="limit"):
            engine.recommend(customer, bad)
        with pytest.raises(InvalidRequest, match="limit"):
            engine.similar("P000001", bad)


def test_customer_ids_are_checked(engine: Engine) -> None:
    for bad in ("", "   ", "C" * 129):
        with pytest.raises(InvalidRequest, match="customer_id"):
            engine.recommend(bad)
        with pytest.raises(InvalidRequest, match="customer_id"):
            engine.rank(bad, ["P000001"])
    rec = engine.recommend("C" * 128, 3)  # the longest allowed id: an unknown customer
    assert not rec.personalized and len(rec.items) == 3


def test_recommendation_ids_are_unique(engine: Engine) -> None:
    customer = heavy_customer(engine)

    def answers() -> Iterator[Recommendation]:
        for _ in range(30):
            yield engine.recommend(customer, 3)
            yield engine.recommend(UNKNOWN, 3)
            yield engine.similar("P000001", 3)
            yield engine.rank(customer, ["P000001", "P000002"])

    ids = [rec.recommendation_id for rec in answers()]
    assert len(set(ids)) == len(ids) == 120
    assert all(len(i) >= 16 for i in ids)


# -- similar --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["none", "include", "exclude_ids", "price_range", "combined"])
def test_similar_excludes_the_query_and_honours_filters(any_engine: Engine, name: str) -> None:
    f = FILTERS[name]
    query = "P000094"
    rec = any_engine.similar(query, 20, f)
    assert not rec.personalized
    ids = check(any_engine, rec, eligible(any_engine, f, current=query), 20, f.max_per_category)
    assert query not in ids


def test_similar_products_are_the_nearest_by_inner_product(engine: Engine) -> None:
    query = "P000094"
    idx = engine.catalog.product_index[query]
    scores = engine.item_factors @ engine.item_factors[idx]
    ranked = [engine.catalog.product_ids[i] for i in np.argsort(-scores, kind="stable") if i != idx]
    rec = engine.similar(query, 10)
    assert [i.product_id for i in rec.items] == ranked[:10]
    assert all(i.reason.startswith("similar to ") for i in rec.items)
    # include_purchased means nothing here.
    same = engine.similar(query, 10, Filter(include_purchased=True))
    assert [i.product_id for i in same.items] == ranked[:10]


def test_similar_to_an_unknown_or_bad_product(engine: Engine) -> None:
    with pytest.raises(NotFound, match="P-unknown"):
        engine.similar("P-unknown")
    for bad in ("", "P" * 129):
        with pytest.raises(InvalidRequest, match="product_id"):
            engine.similar(bad)


# -- rank -----------------------------------------------------------------------------------


def test_rank_returns_each_product_once_best_first_unknown_last(engine: Engine) -> None:
    customer = heavy_customer(engine)
    asked = ["P000005", "X-2", "P000010", "P000005", "X-1", "P000150", "X-2", "P000010"]
    rec = engine.rank(customer, asked)
    assert rec.personalized
    ids = [i.product_id for i in rec.items]
    assert sorted(ids) == sorted(set(asked))
    assert ids[-2:] == ["X-2", "X-1"]  # unknown ones last, in request order
    known = rec.items[:3]
    row = engine.customer_index[customer]
    vector = engine.user_factors[row]
    expected = sorted(
        ["P000005", "P000010", "P000150"],
        key=lambda p: -float(engine.item_factors[engine.catalog.product_index[p]] @ vector),
    )
    assert [i.product_id for i in known] == expected
    assert [i.score for i in known] == sorted((i.score for i in known), reverse=True)


def test_rank_for_an_unknown_customer_orders_by_popularity(engine: Engine) -> None:
    products = catalog(engine)
    asked = [f"P{n:06d}" for n in range(1, 60)]
    rec = engine.rank(UNKNOWN, asked)
    assert not rec.personalized
    pops = [products[i.product_id].popularity for i in rec.items]
    assert pops == sorted(pops, reverse=True)
    assert sorted(i.product_id for i in rec.items) == sorted(asked)


def test_rank_rejects_bad_lists(engine: Engine) -> None:
    customer = heavy_customer(engine)
    with pytest.raises(InvalidRequest, match="empty"):
        engine.rank(customer, [])
    with pytest.raises(InvalidRequest, match="1001"):
        engine.rank(customer, [f"P{n:06d}" for n in range(1001)])
    for bad in ("", " ", "P" * 129):
        with pytest.raises(InvalidRequest, match="product_id"):
            engine.rank(customer, ["P000001", bad])
    ids = [f"P{n:06d}" for n in range(1000)]  # exactly the maximum: 200 known, 800 unknown
    rec = engine.rank(customer, ids)
    assert len(rec.items) == 1000
    assert {i.product_id for i in rec.items[:200]} == set(engine.catalog.product_ids)


# -- info -----------------------------------------------------------------------------------


def test_info_describes_the_bundle(engine: Engine) -> None:
    info = engine.info()
    manifest: dict[str, Any] = engine.bundle.manifest
    assert info.version == engine.version == manifest["version"]
    assert info.created_at == manifest["created_at"]
    assert (info.customers, info.products) == (len(engine.customer_index), 200)
    assert info.interactions == manifest["counts"]["interactions"] > 0
    assert set(info.metrics) == {"ndcg@20", "recall@20", "map@20", "hitrate@20", "coverage@20"}
    assert info.index_kind == "exact" and info.index_recall == 1.0
    assert info.loaded_at

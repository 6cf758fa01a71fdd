"""Attribute filters and the slots of an answer (engine level, no gRPC): every filter kind,
promotion kind and slot kind, checked against a brute-force reading of the contract."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from serving_fixtures import trained

from formats import bundle as b
from formats.errors import InvalidRequest
from formats.types import AttributeCondition, Filter, ProductChange, Recommendation
from recsvc.engine import Engine, EngineConfig
from recsvc.engine.slots import Levers, PromotionRule

TAGS = ("red", "blue", "wool", "silk")
NOW = 1_900_000_000_000  # a fixed "now" (2030) for exploration


def with_attributes(bundle: b.Bundle) -> b.Bundle:
    """The trained bundle plus a numeric attribute (as text, as from a CSV) and a
    multi-valued one."""
    n = bundle.products.height
    return replace(
        bundle,
        products=bundle.products.with_columns(
            pl.Series("size", [str(10 + i % 30) for i in range(n)]),
            pl.Series("tags", [f"{TAGS[i % 4]}|{TAGS[(i // 4) % 4]}" for i in range(n)]),
        ),
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> b.Bundle:
    return with_attributes(b.load_bundle(trained(tmp_path_factory, "exact")))


@pytest.fixture(scope="module")
def engine(bundle: b.Bundle) -> Engine:
    return Engine(bundle, EngineConfig(exploration_share=0.0))


@pytest.fixture(scope="module")
def customer(engine: Engine) -> str:
    sizes = np.diff(engine.user_items.indptr)
    rows = [r for r in range(len(sizes)) if 3 <= sizes[r] <= 10 and engine.user_factors[r].any()]
    return str(engine.bundle.customer_ids[rows[0]])


def rows(engine: Engine) -> dict[str, dict[str, object]]:
    return {r["product_id"]: r for r in engine.bundle.products.to_dicts()}


def holds(row: dict[str, object], c: AttributeCondition) -> bool:
    """The contract of one condition, read directly off a product row."""
    value = row.get(c.name)
    if c.is_range:
        try:
            number = float(str(value))
        except ValueError:
            return False
        return (c.min is None or number >= c.min) and (c.max is None or number <= c.max)
    text = str(value).strip()
    items = [t.strip() for t in text.split("|")] if c.name == "tags" else []
    return any(v == text or v in items for v in c.values)


def non_increasing(rec: Recommendation) -> bool:
    scores = [i.score for i in rec.items]
    return all(a >= b for a, b in itertools.pairwise(scores))


CONDITIONS = {
    "equals": AttributeCondition("tags", equals="wool"),  # one item of a multi-valued value
    "equals_whole": AttributeCondition("tags", equals="red|blue"),
    "any_of": AttributeCondition("tags", any_of=("silk", "blue")),
    "range": AttributeCondition("size", min=15, max=20),
    "range_open": AttributeCondition("size", max=12),
    "numeric_equals": AttributeCondition("size", equals="25"),
}


@pytest.mark.parametrize("kind", sorted(CONDITIONS))
def test_each_attribute_condition_holds_for_every_item_and_fills_to_limit(
    engine: Engine, customer: str, kind: str
) -> None:
    condition = CONDITIONS[kind]
    table = rows(engine)
    eligible = {p for p, r in table.items() if holds(r, condition)}
    assert eligible, kind
    f = Filter(attributes=(condition,), include_purchased=True)
    limit = min(15, len(eligible) - 1)
    for rec in (
        engine.recommend(customer, limit, f),
        engine.recommend("C-unknown", limit, f),
        engine.similar(next(iter(table)), limit, f),
    ):
        got = [i.product_id for i in rec.items]
        assert set(got) <= eligible, kind
        assert len(got) == len(set(got)) == limit, kind  # filled to limit: enough exist
        assert non_increasing(rec)


def test_conditions_combine_with_each_other_and_with_the_other_filters(
    engine: Engine, customer: str
) -> None:
    conditions = (CONDITIONS["any_of"], CONDITIONS["range"])
    f = Filter(attributes=conditions, in_stock_only=True, include_purchased=True)
    table = rows(engine)
    eligible = {
        p for p, r in table.items() if r["in_stock"] and all(holds(r, c) for c in conditions)
    }
    rec = engine.recommend(customer, 200, f)
    assert {i.product_id for i in rec.items} == eligible  # every eligible one, nothing else


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (AttributeCondition("colour", equals="red"), "no attribute 'colour' .*size, tags"),
        (AttributeCondition("price", equals="1"), "has a filter of its own"),
        (AttributeCondition("tags", min=1), "not a numeric attribute"),
        (AttributeCondition("size", equals="big"), "a numeric attribute"),
        (AttributeCondition("size", any_of=()), "any_of is empty"),
        (AttributeCondition("size", min=5, max=1), "range.min 5 is above range.max 1"),
        (AttributeCondition("size"), "set exactly one of equals, any_of, range"),
        (AttributeCondition("", equals="x"), "name is empty"),
    ],
)
def test_bad_conditions_are_invalid_requests(
    engine: Engine, customer: str, condition: AttributeCondition, message: str
) -> None:
    f = Filter(attributes=(condition,))
    with pytest.raises(InvalidRequest, match=message):
        engine.recommend(customer, 5, f)
    with pytest.raises(InvalidRequest, match=message):
        engine.similar("P000001", 5, f)
    with pytest.raises(InvalidRequest, match=message):
        engine.trending("", 5, f)


# -- slots ------------------------------------------------------------------------------------


def category_of(engine: Engine, customer: str) -> str:
    """A category the customer's ranking does not start with (so a promotion shows)."""
    top = {i.category for i in engine.recommend(customer, 5).items}
    counts = engine.bundle.products["category"].value_counts().sort("count", descending=True)
    return str(next(c for c in counts["category"].to_list() if c not in top))


def test_personalized_and_popular_slots(engine: Engine, customer: str) -> None:
    rec = engine.recommend(customer, 10)
    assert rec.personalized and {i.slot for i in rec.items} == {"personalized"}
    narrow = engine.recommend(customer, 50, Filter(include_categories=frozenset({"x"})))
    assert narrow.items == []
    unknown = engine.recommend("C-unknown", 10)
    assert {i.slot for i in unknown.items} == {"popular"}
    assert all(i.reason.startswith("popular in ") for i in unknown.items)


def test_a_promotion_share_takes_its_slots_with_its_products(engine: Engine, customer: str) -> None:
    category = category_of(engine, customer)
    rule = PromotionRule("promo-cat", categories=frozenset({category}), share=0.2, reason="Sale")
    f = Filter(in_stock_only=True)
    for who in (customer, "C-unknown"):
        rec = engine.recommend(who, 10, f, levers=Levers((rule,), now_ms=NOW))
        promoted = [i for i in rec.items if i.slot == "promotion"]
        assert len(promoted) == 2, who
        assert all(i.promotion_id == "promo-cat" and i.category == category for i in promoted)
        assert all(i.reason == "Sale" for i in promoted)
        table = rows(engine)
        assert all(table[i.product_id]["in_stock"] for i in rec.items)  # the filter holds
        assert len(rec.items) == 10 == len({i.product_id for i in rec.items})
        assert non_increasing(rec)
        # Spread through the list, not stacked on top.
        positions = [n for n, i in enumerate(rec.items) if i.slot == "promotion"]
        assert positions[0] > 0
    # An attribute promotion covers only products with that attribute value.
    by_tag = PromotionRule("wool", attributes=(CONDITIONS["equals"],), share=0.3)
    rec = engine.recommend(customer, 10, levers=Levers((by_tag,), now_ms=NOW))
    promoted = [i for i in rec.items if i.promotion_id == "wool"]
    assert len(promoted) == 3
    assert all(holds(rows(engine)[i.product_id], CONDITIONS["equals"]) for i in promoted)


def test_promotion_slots_never_take_more_than_half(engine: Engine, customer: str) -> None:
    rules = tuple(
        PromotionRule(f"p{n}", products=frozenset(engine.catalog.product_ids[n::7]), share=0.5)
        for n in range(3)
    )
    rec = engine.recommend(customer, 10, levers=Levers(rules, now_ms=NOW))
    assert sum(i.slot == "promotion" for i in rec.items) == 5


def test_a_boost_raises_or_lowers_products_in_the_ranking(engine: Engine, customer: str) -> None:
    category = category_of(engine, customer)
    plain = engine.recommend(customer, 10)
    up = PromotionRule("up", categories=frozenset({category}), boost=1000.0)
    raised = engine.recommend(customer, 10, levers=Levers((up,), now_ms=NOW))
    boosted = [i for i in raised.items if i.promotion_id == "up"]
    assert boosted and all(i.category == category and i.slot == "personalized" for i in boosted)
    assert sum(i.category == category for i in raised.items) > sum(
        i.category == category for i in plain.items
    )
    assert all(i.reason for i in raised.items) and non_increasing(raised)
    top = plain.items[0]
    down = PromotionRule("down", products=frozenset({top.product_id}), boost=0.001)
    lowered = engine.recommend(customer, 10, levers=Levers((down,), now_ms=NOW))
    assert lowered.items[0].product_id != top.product_id


def test_trending_fills_first_then_popularity(engine: Engine, customer: str) -> None:
    ids = engine.catalog.product_ids
    trend = [(ids[40], 9.0), (ids[41], 5.0), ("P-not-in-the-catalog", 4.0)]

    def source(category: str | None) -> list[tuple[str, float]]:
        return trend if category is None else [r for r in trend if r[0] == ids[41]]

    rec = engine.recommend("C-unknown", 6, levers=Levers(trending=source, now_ms=NOW))
    assert [i.slot for i in rec.items] == ["trending"] * 2 + ["popular"] * 4
    assert [i.product_id for i in rec.items[:2]] == [ids[40], ids[41]]
    assert rec.items[0].reason == f"trending in {engine.catalog.category_of(40)}"
    # With a category filter, the category's counter is read.
    category = engine.catalog.category_of(41)
    f = Filter(include_categories=frozenset({category}))
    rec = engine.recommend("C-unknown", 3, f, levers=Levers(trending=source, now_ms=NOW))
    assert rec.items[0].product_id == ids[41] and rec.items[0].slot == "trending"
    assert all(i.category == category for i in rec.items)
    # A personalized list that a filter cuts short is topped up the same way.
    few = Filter(include_categories=frozenset({category}))
    topped = engine.recommend(customer, 200, few, levers=Levers(trending=source, now_ms=NOW))
    assert {i.slot for i in topped.items} <= {"personalized", "trending", "popular"}


def test_the_trending_rpc_core(engine: Engine) -> None:
    ids = engine.catalog.product_ids
    rows_ = [(ids[3], 7.0), ("P-gone", 6.0), (ids[5], 3.0), (ids[9], 2.5)]
    rec = engine.trending("", 10, None, lambda category: rows_)
    assert [i.product_id for i in rec.items] == [ids[3], ids[5], ids[9]]
    assert [i.score for i in rec.items] == [7.0, 3.0, 2.5]
    assert {i.slot for i in rec.items} == {"trending"}
    assert rec.recommendation_id.startswith("tr-")
    out = Filter(exclude_product_ids=frozenset({ids[5]}))
    assert [i.product_id for i in engine.trending("", 10, out, lambda c: rows_).items] == [
        ids[3],
        ids[9],
    ]
    assert engine.trending("", 10, None, None).items == []


def young_product(engine: Engine, customer: str, rank: int = 1) -> str:
    """A product created live now, described like the customer's ``rank``-th recommendation."""
    top = engine.recommend(customer, rank).items[-1]
    idx = engine.catalog.product_index[top.product_id]
    change = ProductChange(
        f"NEW-{customer}",
        title=engine.catalog.titles[idx],
        category=top.category,
        attributes={"brand": str(engine.bundle.products["brand"][idx])},
        created_ms=NOW - 86_400_000,
    )
    engine.apply_changes(engine.catalog.change_seq + 1, [change])
    return change.product_id


def test_exploration_offers_new_products_the_customer_likes(
    bundle: b.Bundle, customer: str
) -> None:
    explorer = Engine(bundle, EngineConfig(exploration_share=0.2, new_product_days=30))
    new = young_product(explorer, customer, rank=40)  # liked, but not among the first 10
    vector, _, _ = explorer.customer_vector(customer, None)
    assert vector is not None
    assert float(explorer.catalog.vectors(explorer.catalog.product_index[new]) @ vector) > 0
    rec = explorer.recommend(customer, 10, levers=Levers(now_ms=NOW))
    explored = [i for i in rec.items if i.slot == "exploration"]
    assert new in [i.product_id for i in explored]
    assert all(i.reason == f"new in {i.category}" for i in explored)
    assert len(explored) <= 2 and non_increasing(rec)
    assert len({i.product_id for i in rec.items}) == 10  # an explored product is there once
    # Not for a customer without a vector, and not once the product is old.
    assert all(i.slot != "exploration" for i in explorer.recommend("C-x", 10).items)
    later = Levers(now_ms=NOW + 40 * 86_400_000)
    assert all(
        i.slot != "exploration" for i in explorer.recommend(customer, 10, levers=later).items
    )
    # A share of 0 turns it off.
    off = Engine(bundle, EngineConfig(exploration_share=0.0))
    young_product(off, customer)
    assert all(
        i.slot != "exploration"
        for i in off.recommend(customer, 10, levers=Levers(now_ms=NOW)).items
    )


def test_similar_products_say_where_they_come_from(bundle: b.Bundle, customer: str) -> None:
    engine = Engine(bundle, EngineConfig(exploration_share=0.0))
    warm = engine.catalog.product_ids[0]
    rec = engine.similar(warm, 10)
    assert {i.slot for i in rec.items} == {"similar"}
    assert all(i.reason.startswith("similar to ") for i in rec.items)
    # A product without interactions: its vector comes from its attributes, and it says so.
    new = young_product(engine, customer)
    rec = engine.similar(new, 10)
    assert {i.slot for i in rec.items} == {"content"}
    assert all(i.reason.endswith("by its attributes") for i in rec.items)
    assert all(abs(i.score) > 1e-6 for i in rec.items)  # no zero scores posing as similarity
    # Without a content model it has no usable vector: popular products of its category.
    bare = Engine(replace(bundle, extras={}), EngineConfig(exploration_share=0.0))
    new = young_product(bare, customer)
    category = bare.catalog.category_of(bare.catalog.product_index[new])
    rec = bare.similar(new, 5)
    assert {i.slot for i in rec.items} == {"popular"}
    assert all(i.reason == f"popular in {category}" and i.category == category for i in rec.items)
    assert all(i.score > 0 for i in rec.items)  # popularity, not a similarity of 0


def test_rank_slots(engine: Engine, customer: str) -> None:
    ids = engine.catalog.product_ids[:5]
    assert {i.slot for i in engine.rank(customer, ids).items} == {"personalized"}
    assert {i.slot for i in engine.rank("C-unknown", ids).items} == {"popular"}
    assert engine.rank(customer, ["P-nope"]).items[0].slot == ""


def test_promotions_exploration_and_fill_keep_the_category_cap(
    bundle: b.Bundle, customer: str
) -> None:
    explorer = Engine(bundle, EngineConfig(exploration_share=0.2))
    young_product(explorer, customer)
    category = category_of(explorer, customer)
    rule = PromotionRule("cat", categories=frozenset({category}), share=0.3)
    ids = explorer.catalog.product_ids
    trend = [(ids[n], 10.0 - n / 10) for n in range(30)]
    capped = Filter(max_per_category=1)
    for who in (customer, "C-unknown"):
        levers = Levers((rule,), lambda c: trend, NOW)
        rec = explorer.recommend(who, 12, capped, levers=levers)
        per_category = Counter(i.category for i in rec.items)
        assert max(per_category.values()) == 1, (who, per_category)
        # One per category: as many items as categories (fewer than 12 in this world).
        assert len(rec.items) == min(12, len(explorer.catalog.category_names))
        assert any(i.slot == "promotion" for i in rec.items)
        assert non_increasing(rec)

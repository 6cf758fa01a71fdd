"""The synthetic retail world: deterministic, well-typed and realistic enough to train on."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from training.synth import SynthConfig, World, generate, generator, simulate, write_world

TINY = SynthConfig(customers=1_500, products=300, seed=11)

INTERACTIONS = {
    "customer_id": pl.String(),
    "product_id": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "event_type": pl.String(),
    "quantity": pl.Int32(),
    "amount": pl.Float64(),
}
CATALOG = {
    "product_id": pl.String(),
    "title": pl.String(),
    "category": pl.String(),
    "price": pl.Float64(),
    "in_stock": pl.Boolean(),
    "brand": pl.String(),
    "consumable": pl.Boolean(),
}
CUSTOMERS = {
    "customer_id": pl.String(),
    "signup_date": pl.Date(),
    "birthday": pl.Date(),
    "tier": pl.String(),
    "points": pl.Int64(),
    "consent_personalization": pl.Boolean(),
}


def num(value: object) -> float:
    """A numeric aggregate as float (polars types aggregates as a wide union)."""
    assert isinstance(value, int | float), value
    return float(value)


@pytest.fixture(scope="module")
def world() -> World:
    return generate(TINY)


def test_same_config_gives_identical_world(world: World) -> None:
    again = generate(TINY, progress=True)  # the progress bar must not change anything
    assert_frame_equal(world.interactions, again.interactions)
    assert_frame_equal(world.catalog, again.catalog)
    assert_frame_equal(world.customers, again.customers)


def test_other_seed_gives_other_world(world: World) -> None:
    other = generate(SynthConfig(customers=1_500, products=300, seed=12))
    assert not other.interactions.equals(world.interactions)
    assert not other.catalog.equals(world.catalog)


def test_schemas_are_exact(world: World) -> None:
    assert dict(world.interactions.schema) == INTERACTIONS
    assert dict(world.catalog.schema) == CATALOG
    assert dict(world.customers.schema) == CUSTOMERS
    assert world.catalog.height == TINY.products
    assert world.customers.height == TINY.customers
    assert world.interactions.null_count().drop("amount").sum_horizontal().item() == 0
    assert world.catalog.null_count().sum_horizontal().item() == 0
    assert world.customers.null_count().sum_horizontal().item() == 0


def test_ids_are_formatted_and_unique(world: World) -> None:
    assert world.customers["customer_id"][0] == "C0000001"
    assert world.catalog["product_id"][0] == "P000001"
    assert world.customers["customer_id"].is_unique().all()
    assert world.catalog["product_id"].is_unique().all()


def test_row_count_is_near_customers_times_events(world: World) -> None:
    target = TINY.customers * TINY.events_per_customer
    assert abs(world.interactions.height - target) <= 0.02 * target


def test_interactions_reference_known_products_and_customers(world: World) -> None:
    i = world.interactions
    assert i["product_id"].is_in(world.catalog["product_id"].implode()).all()
    assert i["customer_id"].is_in(world.customers["customer_id"].implode()).all()


def test_interactions_are_sorted_by_customer_then_time(world: World) -> None:
    i = world.interactions
    assert_frame_equal(i, i.sort("customer_id", "timestamp", maintain_order=True))


def test_event_mix_follows_the_funnel(world: World) -> None:
    share = dict(world.interactions["event_type"].value_counts(normalize=True).iter_rows())
    assert set(share) == {"view", "click", "add_to_cart", "purchase"}
    assert share["view"] > share["click"] > share["add_to_cart"]
    assert share["click"] > share["purchase"]
    assert 0.40 < share["view"] < 0.65
    assert 0.05 < share["add_to_cart"] < 0.20
    assert 0.05 < share["purchase"] < 0.20


def test_purchases_carry_amounts_and_quantities(world: World) -> None:
    i = world.interactions.join(world.catalog.select("product_id", "price"), on="product_id")
    purchases = i.filter(pl.col("event_type") == "purchase")
    assert purchases["amount"].null_count() == 0
    error = (purchases["amount"] - purchases["price"] * purchases["quantity"]).abs()
    assert num(error.max()) < 0.006  # amounts are rounded to cents
    others = i.filter(pl.col("event_type") != "purchase")
    assert others["amount"].null_count() == others.height
    assert num(i["quantity"].min()) >= 1
    assert world.interactions.filter(pl.col("event_type") == "view")["quantity"].max() == 1


def test_consumables_are_bought_again_weeks_apart(world: World) -> None:
    repeats = (
        world.interactions.filter(pl.col("event_type") == "purchase")
        .join(world.catalog.select("product_id", "consumable"), on="product_id")
        .filter(pl.col("consumable"))
        .group_by("customer_id", "product_id")
        .agg(
            pl.len().alias("n"),
            (pl.col("timestamp").max() - pl.col("timestamp").min()).alias("span"),
        )
        .filter(pl.col("n") > 1)
    )
    assert repeats.height > 0
    assert num(repeats["span"].dt.total_days().median()) > 7


def test_popularity_is_skewed(world: World) -> None:
    counts = world.interactions.group_by("product_id").len().sort("len", descending=True)
    top = counts.head(TINY.products // 10)["len"].sum()
    assert top / world.interactions.height > 0.40


def test_activity_is_heavy_tailed(world: World) -> None:
    per_customer = world.interactions.group_by("customer_id").len()["len"]
    assert (per_customer <= 2).sum() > 0.03 * TINY.customers
    assert num(per_customer.max()) > 8 * num(per_customer.median())


def test_customers_stay_in_few_categories(world: World) -> None:
    """Latent tastes: a customer's later interactions fall in categories they already used."""
    i = world.interactions.join(
        world.catalog.select("product_id", "category"), on="product_id"
    ).with_columns(
        late=pl.int_range(pl.len()).over("customer_id") >= pl.len().over("customer_id") // 2
    )
    early = i.filter(~pl.col("late")).select("customer_id", "category").unique()
    late = i.filter(pl.col("late"))
    known = late.join(early, on=["customer_id", "category"], how="semi").height / late.height
    assert known > 0.75
    n_categories = world.catalog["category"].n_unique()
    per_customer = i.group_by("customer_id").agg(pl.col("category").n_unique())["category"]
    assert num(per_customer.median()) < n_categories / 2


def test_timestamps_are_in_range_and_seasonal() -> None:
    w = generate(SynthConfig(customers=3_000, products=200, seed=3))
    start = datetime(2025, 1, 1, tzinfo=UTC)
    span = w.interactions.select(
        pl.col("timestamp").min().alias("first"), pl.col("timestamp").max().alias("last")
    ).row(0)
    assert start <= span[0] and span[1] < start + timedelta(days=365)
    months = w.interactions.group_by(pl.col("timestamp").dt.month()).len()
    december = months.filter(pl.col("timestamp") == 12)["len"].item()
    assert december > 1.3 * num(months["len"].mean())
    weekday = w.interactions.group_by(pl.col("timestamp").dt.weekday()).len()
    saturday = weekday.filter(pl.col("timestamp") == 6)["len"].item()
    tuesday = weekday.filter(pl.col("timestamp") == 2)["len"].item()
    assert saturday > 1.2 * tuesday


def test_customers_are_consistent_with_their_history(world: World) -> None:
    c = world.customers
    first = world.interactions.group_by("customer_id").agg(
        pl.col("timestamp").min().dt.date().alias("first")
    )
    joined = c.join(first, on="customer_id")
    assert (joined["signup_date"] < joined["first"]).all()
    start = date(2025, 1, 1)
    age_years = c.select((pl.lit(start) - pl.col("birthday")).dt.total_days() / 365.2425)
    assert age_years.min().item() >= 18 and age_years.max().item() < 81
    assert num(c["points"].min()) >= 0
    assert 0.9 < num(c["consent_personalization"].mean()) < 0.99
    spend = (
        world.interactions.group_by("customer_id")
        .agg(pl.col("amount").sum())
        .join(c, on="customer_id", how="right")
        .with_columns(pl.col("amount").fill_null(0.0))
    )
    by_tier = dict(spend.group_by("tier").agg(pl.col("amount").min()).iter_rows())
    assert set(by_tier) == {"bronze", "silver", "gold", "platinum"}
    assert by_tier["bronze"] < by_tier["silver"] < by_tier["gold"] < by_tier["platinum"]
    # Points come from spend: nobody holds more than twice (platinum rate) what they spent.
    assert (spend["points"] <= 2 * spend["amount"] + 1).all()


def test_catalog_is_realistic(world: World) -> None:
    cat = world.catalog
    assert num(cat["price"].min()) > 0
    assert 0.85 < num(cat["in_stock"].mean()) < 0.98
    assert cat["title"].str.contains(r"^\w[^#]* #\d+$").all()
    assert cat["consumable"].any() and not cat["consumable"].all()
    # consumable is a category-level flag
    assert cat.group_by("category").agg(pl.col("consumable").n_unique())["consumable"].max() == 1
    # prices depend on the category
    medians = cat.group_by("category").agg(pl.col("price").median())["price"]
    assert num(medians.max()) > 5 * num(medians.min())


def test_category_count_follows_config() -> None:
    w = generate(SynthConfig(customers=50, products=400, categories=12, seed=1))
    assert w.catalog["category"].n_unique() == 12
    auto = generate(SynthConfig(customers=50, products=3, seed=1))
    assert auto.catalog["category"].n_unique() == 3


def test_chunking_and_blocking_only_change_work_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = SynthConfig(customers=900, products=250, seed=5, events_per_customer=6.0)
    monkeypatch.setattr(generator, "_CHUNK_CUSTOMERS", 200)
    base = generate(cfg)
    monkeypatch.setattr(simulate, "_BLOCK_CELLS", 500)  # many small softmax blocks, same draws
    blocked = generate(cfg)
    assert_frame_equal(base.interactions, blocked.interactions)
    assert_frame_equal(base.customers, blocked.customers)
    i = base.interactions
    assert_frame_equal(i, i.sort("customer_id", "timestamp", maintain_order=True))
    assert abs(i.height - 900 * 6) <= 0.03 * 900 * 6


def test_no_events_and_bad_configs() -> None:
    empty = generate(SynthConfig(customers=20, products=10, events_per_customer=0.0))
    assert empty.interactions.height == 0
    assert dict(empty.interactions.schema) == INTERACTIONS
    assert empty.customers.height == 20
    assert (empty.customers["tier"] == "bronze").all()
    for bad in (
        SynthConfig(customers=0),
        SynthConfig(products=0),
        SynthConfig(events_per_customer=-1.0),
        SynthConfig(days=0),
    ):
        with pytest.raises(ValueError):
            generate(bad)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_write_world_round_trips(
    world: World, tmp_path: Path, fmt: Literal["parquet", "csv"]
) -> None:
    out = tmp_path / "nested" / "world"
    paths = write_world(world, out, fmt)
    assert set(paths) == {"interactions", "catalog", "customers"}
    expected = {
        "interactions": (world.interactions, INTERACTIONS),
        "catalog": (world.catalog, CATALOG),
        "customers": (world.customers, CUSTOMERS),
    }
    for name, path in paths.items():
        assert path == out / f"{name}.{fmt}" and path.exists()
        frame, schema = expected[name]
        back = pl.read_parquet(path) if fmt == "parquet" else pl.read_csv(path, schema=schema)
        assert_frame_equal(back, frame)

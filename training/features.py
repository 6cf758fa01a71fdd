"""Customer and product feature frames for `recsvc features load`: the history summarized
per customer (counters, spend, recent products, top categories), the customers file (tier,
points, consent, birthday), the loyalty analytics, and the model's view of each customer's
categories; products with their category, price, stock and popularity. ``feature_store.bulk``
writes these frames as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from formats.bundle import Bundle
from training.analytics import (
    OUTPUT_COLUMNS,
    AnalyticsConfig,
    compute,
    top_categories,
    vector_top_categories,
)

RECENT_IN_PROFILE = 20  # product ids kept in a profile's "recent" list
# Every field of a customer profile (a JSON object); null when unknown. The loyalty
# analytics (segment, lifecycle stage, value, churn risk) join this set as they are built.
PROFILE_FIELDS = (
    "interactions",
    "purchases",
    "spend",
    "first_seen",
    "last_seen",
    "last_purchase",
    "recent",
    "top_categories",
    "tier",
    "points",
    "consent_personalization",
    "birthday",  # ISO date, for birthday offers
)
# Loyalty analytics (training.analytics.compute), merged when given; "as_of" is their date.
ANALYTICS_FIELDS = tuple(c for c in OUTPUT_COLUMNS if c not in ("customer_id", "top_categories"))


@dataclass(frozen=True)
class Features:
    customers: pl.DataFrame  # customer_id, PROFILE_FIELDS [, ANALYTICS_FIELDS, as_of]
    products: pl.DataFrame  # product_id, category, price, in_stock, popularity
    as_of: str  # the analytics date, "" without analytics


def customer_features(
    interactions: pl.DataFrame,
    catalog: pl.DataFrame,
    customers: pl.DataFrame | None = None,
    analytics: pl.DataFrame | None = None,
    as_of: str = "",
    model_categories: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per customer: ``customer_id``, PROFILE_FIELDS, and ANALYTICS_FIELDS plus
    ``as_of`` (their date) when ``analytics`` (training.analytics.compute's table) is given,
    and ``top_categories_model`` when ``model_categories``
    (training.analytics.vector_top_categories) is."""
    ms = pl.col("timestamp").dt.epoch("ms")
    purchase = pl.col("event_type") == "purchase"
    base = interactions.group_by("customer_id").agg(
        pl.len().alias("interactions"),
        purchase.sum().alias("purchases"),
        pl.col("amount").filter(purchase).sum().alias("spend"),
        ms.min().alias("first_seen"),
        ms.max().alias("last_seen"),
        ms.filter(purchase).max().alias("last_purchase"),
        pl.col("product_id")
        .sort_by("timestamp", descending=True)
        .unique(maintain_order=True)
        .head(RECENT_IN_PROFILE)
        .alias("recent"),
    )
    features = base.join(top_categories(interactions, catalog), on="customer_id", how="left")
    extra = ("tier", "points", "consent_personalization", "birthday")
    if customers is not None:
        present = [c for c in extra if c in customers.columns]
        features = features.join(
            customers.select("customer_id", *present), on="customer_id", how="full", coalesce=True
        )
    for column in extra:
        if column not in features.columns:
            features = features.with_columns(pl.lit(None).alias(column))
    features = features.with_columns(pl.col("birthday").cast(pl.Utf8))
    # Customers known only from the customers file have no history: zeros, not unknowns.
    features = features.with_columns(
        pl.col("interactions", "purchases").fill_null(0),
        pl.col("spend").fill_null(0.0),
        pl.col("recent").fill_null([]),
        pl.col("top_categories").fill_null([]),
    )
    features = features.select("customer_id", *PROFILE_FIELDS)
    if model_categories is not None:
        features = features.join(model_categories, on="customer_id", how="left")
    if analytics is None:
        return features
    scored = analytics.select("customer_id", *ANALYTICS_FIELDS)
    joined = features.join(scored, on="customer_id", how="left")
    return joined.with_columns(pl.lit(as_of).alias("as_of"))


def product_features(interactions: pl.DataFrame, catalog: pl.DataFrame) -> pl.DataFrame:
    """One row per catalog product: category, price, in_stock, popularity (customers)."""
    popularity = interactions.group_by("product_id").agg(
        pl.col("customer_id").n_unique().alias("popularity")
    )
    return (
        catalog.select("product_id", "category", "price", "in_stock")
        .join(popularity, on="product_id", how="left")
        .with_columns(pl.col("popularity").fill_null(0))
    )


def model_categories(bundle: Bundle) -> pl.DataFrame:
    """Each trained customer's top categories by their model vector."""
    return vector_top_categories(
        bundle.customer_ids.to_list(),
        bundle.user_factors,
        bundle.item_factors,
        bundle.products["category"].cast(pl.Utf8).fill_null("uncategorized").to_list(),
    )


def build_features(
    interactions: pl.DataFrame,
    catalog: pl.DataFrame,
    customers: pl.DataFrame | None = None,
    *,
    as_of: datetime | None = None,
    horizon_days: int = 90,
    analytics: AnalyticsConfig | None = None,
    bundle: Bundle | None = None,
) -> Features:
    """Everything `recsvc features load` writes. ``as_of`` defaults to the last event;
    ``analytics`` adds the loyalty analytics computed with it; ``bundle`` adds the model's
    categories of each customer."""
    if as_of is None:
        last = interactions.get_column("timestamp").max()
        as_of = last if isinstance(last, datetime) else datetime.now(UTC)
    scored, day = None, ""
    if analytics is not None:
        scored = compute(interactions, as_of, horizon_days, customers, catalog, analytics)
        day = as_of.date().isoformat()
    rows = customer_features(
        interactions,
        catalog,
        customers,
        scored,
        day,
        model_categories(bundle) if bundle is not None else None,
    )
    return Features(rows, product_features(interactions, catalog), day)


def feature_frames(
    interactions: pl.DataFrame, catalog: pl.DataFrame, customers: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Customer and product frames from the files alone (no analytics, no model)."""
    return customer_features(interactions, catalog, customers), product_features(
        interactions, catalog
    )

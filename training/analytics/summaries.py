"""Purchase days and the per-buyer summary (lifetimes' x, tx, T and spend) everything else
is computed from."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import polars as pl

from training.analytics.config import AnalyticsError
from training.analytics.fitting import F64


def utc_day(value: date | datetime) -> date:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).date()
    return value


def until(as_of: date | datetime) -> pl.Expr:
    """Events at or before ``as_of`` (a date includes its whole UTC day)."""
    if isinstance(as_of, datetime):
        aware = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
        return pl.col("timestamp") <= pl.lit(aware.astimezone(UTC)).dt.cast_time_unit("us")
    return pl.col("timestamp").dt.date() <= pl.lit(as_of)


def with_defaults(interactions: pl.DataFrame) -> pl.DataFrame:
    """The columns the analytics read, with ingest's defaults for the optional ones."""
    missing = [c for c in ("customer_id", "timestamp") if c not in interactions.columns]
    if missing:
        raise AnalyticsError(f"interactions lack column(s) {', '.join(missing)}")
    frame = interactions.with_columns(pl.col("customer_id").cast(pl.Utf8))
    defaults: dict[str, pl.Expr] = {
        "product_id": pl.lit(None, dtype=pl.Utf8),
        "event_type": pl.lit("purchase"),
        "quantity": pl.lit(1.0),
        "amount": pl.lit(None, dtype=pl.Float64),
    }
    add = [expr.alias(name) for name, expr in defaults.items() if name not in frame.columns]
    if add:
        frame = frame.with_columns(add)
    ts = frame.schema["timestamp"]
    if not isinstance(ts, pl.Datetime):
        raise AnalyticsError("interactions.timestamp must be a datetime (use training.ingest)")
    if ts.time_zone is None:
        frame = frame.with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))
    return frame


def purchase_days(
    interactions: pl.DataFrame,
    catalog: pl.DataFrame | None = None,
    as_of: date | datetime | None = None,
) -> pl.DataFrame:
    """One row per (customer_id, day) with at least one purchase (at or before ``as_of``):
    ``day`` (UTC date) and ``spend`` (the sum of the day's known values, null if none)."""
    frame = with_defaults(interactions).filter(pl.col("event_type") == "purchase")
    if as_of is not None:
        frame = frame.filter(until(as_of))
    value = pl.col("amount").cast(pl.Float64)
    if catalog is not None and "price" in catalog.columns:
        prices = catalog.select("product_id", pl.col("price").cast(pl.Float64).alias("__price"))
        frame = frame.join(prices, on="product_id", how="left")
        value = pl.coalesce(value, pl.col("quantity").cast(pl.Float64) * pl.col("__price"))
    return (
        frame.group_by("customer_id", pl.col("timestamp").dt.date().alias("day"))
        .agg(
            # polars sums an all-null group to 0; unknown must stay unknown.
            pl.when(value.count() > 0).then(value.sum()).otherwise(None).alias("spend")
        )
        .sort("customer_id", "day")
    )


def buyer_summary(days: pl.DataFrame, end: date) -> pl.DataFrame:
    """Per buyer up to ``end``: lifetimes' x (repeat days), tx (last - first), T (end - first)
    in days, and the spend figures."""
    first = pl.col("day").min()
    repeat = pl.col("day") > first
    return (
        days.filter(pl.col("day") <= end)
        .group_by("customer_id")
        .agg(
            (pl.len() - 1).cast(pl.Int64).alias("x"),
            (pl.col("day").max() - first).dt.total_days().cast(pl.Int64).alias("tx"),
            (pl.lit(end) - first).dt.total_days().cast(pl.Int64).alias("T"),
            first.alias("first_day"),
            pl.col("spend").mean().alias("monetary"),
            pl.col("spend").filter(repeat).count().cast(pl.Int64).alias("gg_x"),
            pl.col("spend").filter(repeat).mean().alias("gg_m"),
        )
        .sort("customer_id")
    )


def actual_purchases(days: pl.DataFrame, summary: pl.DataFrame, start: date, end: date) -> F64:
    """Purchase days in (start, end] of each customer of ``summary``, in its row order."""
    counts = (
        days.filter((pl.col("day") > start) & (pl.col("day") <= end))
        .group_by("customer_id")
        .agg(pl.len().cast(pl.Float64).alias("n"))
    )
    joined = summary.select("customer_id").join(
        counts, on="customer_id", how="left", maintain_order="left"
    )
    return joined["n"].fill_null(0.0).to_numpy().astype(np.float64)

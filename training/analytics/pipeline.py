"""`analyze` and `compute`: the per-customer table, put together from the other modules."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from training.analytics.categories import top_categories
from training.analytics.config import DEFAULT_CONFIG, AnalyticsConfig, AnalyticsError
from training.analytics.lifecycle import lifecycle_stage
from training.analytics.rfm import add_rfm, value_segment
from training.analytics.selection import ModelInfo, fit_model
from training.analytics.summaries import buyer_summary, purchase_days, until, utc_day, with_defaults

log = logging.getLogger(__name__)


OUTPUT_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "recency_days",
    "frequency",
    "monetary",
    "r_score",
    "f_score",
    "m_score",
    "rfm_score",
    "segment",
    "lifecycle_stage",
    "expected_purchases",
    "clv",
    "p_alive",
    "churn_risk",
    "top_categories",
)
CUSTOMER_COLUMNS: tuple[str, ...] = ("tier", "points")  # added when a customers frame is given


@dataclass(frozen=True)
class AnalyticsResult:
    table: pl.DataFrame
    model: ModelInfo | None  # None: no model could be fitted (the BTYD columns are null)
    notes: tuple[str, ...]


def analyze(
    interactions: pl.DataFrame,
    as_of: date | datetime,
    horizon_days: int,
    customers: pl.DataFrame | None = None,
    catalog: pl.DataFrame | None = None,
    config: AnalyticsConfig = DEFAULT_CONFIG,
) -> AnalyticsResult:
    """`compute`'s table plus the fitted model's description and notes."""
    config.validate()
    if horizon_days < 1:
        raise AnalyticsError("horizon_days must be >= 1")
    end = utc_day(as_of)
    frame = with_defaults(interactions).filter(until(as_of))
    days = purchase_days(frame, catalog)
    summary = buyer_summary(days, end)
    ids = frame.select("customer_id")
    if customers is not None:
        ids = pl.concat([ids, customers.select(pl.col("customer_id").cast(pl.Utf8))])
    table = ids.unique().join(summary, on="customer_id", how="left")
    table = add_rfm(table, config.rfm_bins)
    notes: list[str] = []
    model: ModelInfo | None = None
    try:
        fitted = fit_model(days, end, horizon_days, config)
    except AnalyticsError as exc:
        notes.append(f"no repeat-buying model: {exc}")
        log.warning("analytics: no repeat-buying model: %s", exc)
        table = table.with_columns(
            pl.lit(None, dtype=pl.Float64).alias(c)
            for c in ("expected_purchases", "clv", "p_alive")
        )
    else:
        model = fitted.info
        notes.extend(model.notes)
        pred = fitted.fitter.predict(summary, end, horizon_days, config.annual_discount_rate)
        spend = fitted.spend.expected(summary)
        scale = model.bias_scale
        values = summary.select("customer_id").with_columns(
            pl.Series("expected_purchases", pred.expected * scale),
            pl.Series("clv", pred.discounted * scale * spend),
            pl.Series("p_alive", pred.p_alive),
        )
        table = table.join(values.fill_nan(None), on="customer_id", how="left")
    use_clv = config.segments.by == "clv" and model is not None
    if config.segments.by == "clv" and model is None:
        notes.append("segments by CLV need a model: segmented by RFM instead")
    table = table.with_columns(
        (1.0 - pl.col("p_alive")).alias("churn_risk"),
        value_segment(config.segments, config.rfm_bins, use_clv).alias("segment"),
        lifecycle_stage(config.lifecycle).alias("lifecycle_stage"),
    )
    if catalog is not None:
        table = table.join(top_categories(frame, catalog), on="customer_id", how="left")
        table = table.with_columns(pl.col("top_categories").fill_null([]))
    else:
        table = table.with_columns(pl.lit([], dtype=pl.List(pl.Utf8)).alias("top_categories"))
    columns = list(OUTPUT_COLUMNS)
    if customers is not None:
        extra = [c for c in CUSTOMER_COLUMNS if c in customers.columns]
        loyalty = customers.select(pl.col("customer_id").cast(pl.Utf8), *extra).unique(
            "customer_id", keep="first", maintain_order=True
        )
        table = table.join(loyalty, on="customer_id", how="left")
        for c in CUSTOMER_COLUMNS:
            if c not in table.columns:
                table = table.with_columns(pl.lit(None).alias(c))
        columns.extend(CUSTOMER_COLUMNS)
    return AnalyticsResult(table.select(columns).sort("customer_id"), model, tuple(notes))


def compute(
    interactions: pl.DataFrame,
    as_of: date | datetime,
    horizon_days: int,
    customers: pl.DataFrame | None = None,
    catalog: pl.DataFrame | None = None,
    config: AnalyticsConfig = DEFAULT_CONFIG,
) -> pl.DataFrame:
    """One row per customer (OUTPUT_COLUMNS, then tier and points when ``customers`` is
    given), sorted by customer_id; see the package docstring for every definition.

    Customers are those with any interaction at or before ``as_of`` plus everyone in
    ``customers`` (those without a purchase are prospects). ``catalog`` (product_id, category,
    price) prices purchases without an amount and gives top_categories (empty without it).
    When no model can be fitted (too few repeat buyers, every candidate failing), the model
    columns are null and a warning is logged; `analyze` returns the reason as well.
    """
    return analyze(interactions, as_of, horizon_days, customers, catalog, config).table

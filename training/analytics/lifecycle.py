"""The lifecycle stage of each customer (`LifecycleRules`)."""

from __future__ import annotations

import polars as pl

from training.analytics.config import LifecycleRules


def lifecycle_stage(rules: LifecycleRules) -> pl.Expr:
    recency, tenure = pl.col("recency_days"), pl.col("T")  # T = days since the first purchase
    loyal = (pl.col("frequency") >= rules.loyal_min_frequency) & (
        tenure >= rules.loyal_min_tenure_days
    )
    return (
        pl.when(pl.col("x").is_null())
        .then(pl.lit("prospect"))
        .when(tenure <= rules.new_days)
        .then(pl.lit("new"))
        .when((recency <= rules.active_days) & loyal)
        .then(pl.lit("loyal"))
        .when(recency <= rules.active_days)
        .then(pl.lit("active"))
        .when(recency <= rules.at_risk_days)
        .then(pl.lit("at_risk"))
        .otherwise(pl.lit("lapsed"))
    )

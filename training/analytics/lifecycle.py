"""The lifecycle stage of each customer (`LifecycleRules`)."""

from __future__ import annotations

import polars as pl

from formats.loyalty import LIFECYCLE_STAGES
from training.analytics.config import LifecycleRules

# The names come from the shared vocabulary; unpacking fails at import if its shape changes.
PROSPECT, NEW, ACTIVE, LOYAL, AT_RISK, LAPSED = LIFECYCLE_STAGES


def lifecycle_stage(rules: LifecycleRules) -> pl.Expr:
    recency, tenure = pl.col("recency_days"), pl.col("T")  # T = days since the first purchase
    loyal = (pl.col("frequency") >= rules.loyal_min_frequency) & (
        tenure >= rules.loyal_min_tenure_days
    )
    return (
        pl.when(pl.col("x").is_null())
        .then(pl.lit(PROSPECT))
        .when(tenure <= rules.new_days)
        .then(pl.lit(NEW))
        .when((recency <= rules.active_days) & loyal)
        .then(pl.lit(LOYAL))
        .when(recency <= rules.active_days)
        .then(pl.lit(ACTIVE))
        .when(recency <= rules.at_risk_days)
        .then(pl.lit(AT_RISK))
        .otherwise(pl.lit(LAPSED))
    )

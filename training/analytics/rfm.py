"""RFM scores and the value segment of buyers."""

from __future__ import annotations

import polars as pl

from formats.loyalty import PROSPECT, VALUE_SEGMENTS
from training.analytics.config import SegmentRules

# The names come from the shared vocabulary; unpacking fails at import if its shape changes.
HIGH_VALUE, MID_VALUE, LOW_VALUE = VALUE_SEGMENTS


def _scores(values: pl.Expr, bins: int, higher_is_better: bool) -> pl.Expr:
    """1 + floor(bins * share of non-null values strictly worse); 0 where the value is null."""
    ranked = values if higher_is_better else -values
    worse = ranked.rank(method="min") - 1  # values strictly below, ties share the rank
    n = ranked.count()
    score = (pl.lit(1) + (worse * bins / n).floor()).cast(pl.Int64)
    return pl.when(values.is_null()).then(pl.lit(0, dtype=pl.Int64)).otherwise(score)


def add_rfm(summary: pl.DataFrame, bins: int) -> pl.DataFrame:
    """Add recency_days, frequency, r/f/m scores and rfm_score to a frame with customer_id,
    x, tx, T and monetary as `buyer_summary` makes them (null x: no purchase, a prospect), scored
    in ``bins`` bins."""
    buyer = pl.col("x").is_not_null()
    out = summary.with_columns(
        (pl.col("T") - pl.col("tx")).alias("recency_days"),
        pl.col("x").fill_null(0).alias("frequency"),
    )
    out = out.with_columns(
        _scores(pl.col("recency_days"), bins, higher_is_better=False).alias("r_score"),
        _scores(pl.col("x"), bins, higher_is_better=True).alias("f_score"),
        _scores(pl.when(buyer).then(pl.col("monetary")), bins, higher_is_better=True).alias(
            "m_score"
        ),
    )
    digits = [pl.col(c).cast(pl.Utf8) for c in ("r_score", "f_score", "m_score")]
    return out.with_columns(pl.concat_str(digits).alias("rfm_score"))


def value_segment(rules: SegmentRules, bins: int, use_clv: bool) -> pl.Expr:
    """The value segment of buyers by ``rules`` (`SegmentRules`); prospect for everyone else."""
    buyer = pl.col("x").is_not_null()
    if use_clv:
        clv = pl.when(buyer).then(pl.col("clv"))
        higher = (-clv).rank(method="min") - 1  # buyers with a strictly higher CLV
        share = higher / clv.count()
        value = (
            pl.when(clv.is_null())
            .then(pl.lit(LOW_VALUE))  # a buyer the model could not score
            .when(share < rules.clv_high_share)
            .then(pl.lit(HIGH_VALUE))
            .when(share < rules.clv_high_share + rules.clv_mid_share)
            .then(pl.lit(MID_VALUE))
            .otherwise(pl.lit(LOW_VALUE))
        )
    else:
        rf = pl.col("r_score") + pl.col("f_score")
        # Unknown spend (m_score 0): judge on R and F scaled to three scores, rounded half up.
        total = (
            pl.when(pl.col("m_score") > 0).then(rf + pl.col("m_score")).otherwise((rf * 3 + 1) // 2)
        )
        high, mid = rules.rfm_totals(bins)
        value = (
            pl.when(total >= high)
            .then(pl.lit(HIGH_VALUE))
            .when(total >= mid)
            .then(pl.lit(MID_VALUE))
            .otherwise(pl.lit(LOW_VALUE))
        )
    return pl.when(buyer).then(value).otherwise(pl.lit(PROSPECT))

"""Loyalty tiers derived from spend (`recsvc analytics --tier-rules`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import polars as pl

from training.analytics.config import AnalyticsError
from training.analytics.summaries import purchase_days, utc_day


@dataclass(frozen=True)
class TierRules:
    """Tiers derived from spend, for programmes that work that way: the highest tier whose
    threshold the customer's spend over the last ``window_days`` reaches."""

    thresholds: tuple[tuple[str, float], ...]  # (tier, minimum spend), any order
    window_days: int = 365

    @classmethod
    def parse(cls, text: str, window_days: int = 365) -> TierRules:
        """ "silver=100,gold=500,platinum=2000" (a tier with no threshold: "bronze=0")."""
        pairs: list[tuple[str, float]] = []
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, sep, value = part.partition("=")
            try:
                threshold = float(value)
            except ValueError:
                threshold = -1.0
            if not sep or not name.strip() or not threshold >= 0:
                raise AnalyticsError(f"bad tier rule {part!r}: expected TIER=MIN_SPEND, spend >= 0")
            pairs.append((name.strip(), threshold))
        if not pairs:
            raise AnalyticsError("no tier rules given")
        return cls(tuple(pairs), window_days)


def derive_tiers(
    interactions: pl.DataFrame,
    as_of: date | datetime,
    rules: TierRules,
    catalog: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """customer_id, tier: by spend over the window ending at ``as_of`` (customers below every
    threshold get null: keep their tier from the customers file)."""
    end = utc_day(as_of)
    start = end - timedelta(days=rules.window_days)
    days = purchase_days(interactions, catalog, as_of)
    spend = (
        days.filter(pl.col("day") > start)
        .group_by("customer_id")
        .agg(pl.col("spend").fill_null(0.0).sum().alias("window_spend"))
    )
    ordered = sorted(rules.thresholds, key=lambda t: t[1], reverse=True)
    tier: pl.Expr = pl.lit(None, dtype=pl.Utf8)
    for name, threshold in reversed(ordered):  # the highest threshold reached wins
        tier = pl.when(pl.col("window_spend") >= threshold).then(pl.lit(name)).otherwise(tier)
    return spend.select("customer_id", tier.alias("tier"))


def with_tier_rules(
    customers: pl.DataFrame | None,
    interactions: pl.DataFrame,
    as_of: date | datetime,
    rules: str | None,
    catalog: pl.DataFrame | None = None,
) -> pl.DataFrame | None:
    """The customers frame with tiers derived from spend where the rules give one."""
    if not rules:
        return customers
    derived = derive_tiers(interactions, as_of, TierRules.parse(rules), catalog)
    if customers is None:
        return derived
    joined = customers.join(
        derived.rename({"tier": "derived_tier"}), on="customer_id", how="full", coalesce=True
    )
    tier = (
        pl.coalesce(pl.col("derived_tier"), pl.col("tier"))
        if "tier" in customers.columns
        else pl.col("derived_tier")
    )
    return joined.with_columns(tier.alias("tier")).drop("derived_tier")

"""Customers: signup, churn, activity budget, age and consent; tiers and points from spend."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Final

import numpy as np
import polars as pl

from training.synth.arrays import F64, I64, B
from training.synth.config import TIERS, SynthConfig, start_date

# Population knobs, tuned with the behavioural ones of simulate.py.
_NO_EVENTS: Final = 0.02  # registered customers who never interacted
_NEW_CUSTOMERS: Final = 0.35  # customers who sign up during the simulated period
_CHURN: Final = 0.20  # customers who stop interacting before the end


@dataclass(frozen=True)
class Customers:
    n_events: I64  # event budget per customer
    active_from: I64  # first day (relative to start) the customer may interact
    active_to: I64  # exclusive last day
    signup_day: I64  # relative to start; < active_from
    age_days: I64  # age at start, in days
    consent: B
    start: date

    def frame(self, ids: pl.Series, spend: F64, rng: np.random.Generator) -> pl.DataFrame:
        epoch_day = (self.start - date(1970, 1, 1)).days
        tier, points = _loyalty(spend, rng)
        return pl.DataFrame(
            {
                "customer_id": ids,
                "signup_date": pl.Series(epoch_day + self.signup_day).cast(pl.Int32),
                "birthday": pl.Series(epoch_day - self.age_days).cast(pl.Int32),
                "tier": pl.Series(TIERS, dtype=pl.Utf8).gather(tier),
                "points": points,
                "consent_personalization": self.consent,
            }
        ).cast({"signup_date": pl.Date, "birthday": pl.Date})


def make_customers(config: SynthConfig, rng: np.random.Generator) -> Customers:
    n, days = config.customers, config.days
    total = round(n * config.events_per_customer)

    # New customers sign up during the period (leaving room for some activity); the rest
    # joined up to ~10 years before it. Activity starts the day after signup.
    new = (rng.random(n) < _NEW_CUSTOMERS) & (days > 14)
    signup = np.where(
        new,
        (rng.random(n) * max(days - 14, 1)).astype(np.int64),
        -1 - np.minimum(rng.exponential(700.0, n), 3650.0).astype(np.int64),
    )
    active_from = np.where(new, signup + 1, 0)
    churn = rng.random(n) < _CHURN
    span = days - active_from
    active_to = np.where(
        churn, active_from + np.maximum(7, (rng.random(n) * span).astype(np.int64)), days
    )
    active_to = np.minimum(active_to, days)

    # Heavy-tailed activity: a log-normal daily rate times the days active, apportioned so
    # the total is exact.
    active = rng.random(n) >= _NO_EVENTS
    if not active.any():
        active[:] = True
    weights = rng.lognormal(0.0, 1.25, n) * (active_to - active_from) * active
    n_active = int(active.sum())
    floor = 1 if total >= n_active else 0  # everyone active gets >= 1 event when possible
    n_events = floor * active + _apportion(weights, total - floor * n_active)

    # Ages 18-80 at the start date, centred on the early forties.
    age_years = np.clip(rng.normal(42.0, 14.0, n), 18.0, 80.99)
    age_days = np.maximum((age_years * 365.2425).astype(np.int64), 18 * 366)
    return Customers(
        n_events=n_events.astype(np.int64),
        active_from=active_from.astype(np.int64),
        active_to=active_to.astype(np.int64),
        signup_day=signup.astype(np.int64),
        age_days=age_days,
        consent=rng.random(n) < 0.95,
        start=start_date(config),
    )


def _apportion(weights: F64, total: int) -> I64:
    """Integer counts proportional to weights summing exactly to total (largest remainder)."""
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    quota = weights / weights.sum() * total
    counts = np.floor(quota).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        # Stable sort on the negated remainder: ties resolve by index, deterministically.
        counts[np.argsort(-(quota - counts), kind="stable")[:short]] += 1
    return np.asarray(counts, dtype=np.int64)


def _loyalty(spend: F64, rng: np.random.Generator) -> tuple[I64, I64]:
    """Tier from spend against round thresholds (set near the 60/88/97.5% quantiles of
    spenders, as a programme would publish them); points = tier-boosted spend minus redeemed
    500-point vouchers, so they never go negative."""
    tier = np.zeros(len(spend), dtype=np.int64)
    spenders = spend[spend > 0]
    if len(spenders):
        thresholds = [_round_sig(float(q), 2) for q in np.quantile(spenders, [0.6, 0.88, 0.975])]
        for t in thresholds:
            tier += (spend > 0) & (spend >= t)
    multiplier = np.array([1.0, 1.25, 1.5, 2.0])[tier]
    earned = np.floor(spend * multiplier).astype(np.int64)
    redeemed = 500 * rng.binomial(earned // 500, 0.5)
    return tier, earned - redeemed


def _round_sig(x: float, digits: int) -> float:
    if x <= 0:
        return x
    return round(x, digits - 1 - math.floor(math.log10(x)))

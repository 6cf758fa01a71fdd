"""The supervised, time-shifted CLV candidate (training/analytics/supervised.py) on a growing
business, where the BTYD models' stationary rates must under-forecast."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from training.analytics import (
    AnalyticsConfig,
    AnalyticsError,
    Candidate,
    HoldoutReport,
    analyze,
    holdout_check,
)
from training.analytics.forecasters import fit_forecaster
from training.analytics.summaries import buyer_summary, purchase_days
from training.analytics.supervised import FEATURES, features, window_days

START = date(2024, 1, 1)
CALIBRATION_END = START + timedelta(days=360)
HOLDOUT_END = START + timedelta(days=540)
BG, SUPERVISED = Candidate("bgnbd"), Candidate("supervised")


def simulate_growth(n: int, growth_per_year: float, seed: int) -> pl.DataFrame:
    """Customers acquired over the first 90 days who buy ever more: customer i buys at rate
    rate_i * exp(g t) (t in days, rate_i ~ Gamma(2, mean 1/40 a day)), so every customer's
    rate is multiplied by ``growth_per_year`` a year, and leaves after a purchase with
    probability p_i ~ Beta(1, 30). Observed for 540 days."""
    rng = np.random.default_rng(seed)
    g = np.log(growth_per_year) / 365.0
    rate = rng.gamma(2.0, 1 / 80, n)
    dropout = rng.beta(1.0, 30.0, n)
    t = rng.uniform(0, 90, n)
    owners, times = [np.arange(n)], [t.copy()]
    active = np.ones(n, dtype=bool)
    while active.any():
        # The next event of a Poisson process with intensity rate * exp(g t) after t:
        # exp(g t') = exp(g t) + g E / rate, E ~ Exp(1).
        t = np.log(np.exp(g * t) + g * rng.exponential(1.0, n) / rate) / g
        active &= t < 540
        owners.append(np.flatnonzero(active))
        times.append(t[active])
        active &= rng.random(n) >= dropout
    owner, when = np.concatenate(owners), np.concatenate(times)
    base_us = int(datetime(START.year, START.month, START.day, tzinfo=UTC).timestamp() * 1e6)
    return pl.DataFrame(
        {
            "customer_id": pl.Series([f"G{i:05d}" for i in owner]),
            "timestamp": pl.Series(base_us + (when * 86_400e6).astype(np.int64)).cast(
                pl.Datetime("us", "UTC")
            ),
            "event_type": "purchase",
            "amount": np.round(rng.gamma(5.0, 4.0, len(owner)), 2),
        }
    )


@pytest.fixture(scope="module")
def growing() -> pl.DataFrame:
    return simulate_growth(4_000, growth_per_year=2.0, seed=1)


@pytest.fixture(scope="module")
def report(growing: pl.DataFrame) -> HoldoutReport:
    config = AnalyticsConfig(candidates=(BG, SUPERVISED))
    return holdout_check(growing, CALIBRATION_END, HOLDOUT_END, config)


def test_supervised_beats_bgnbd_on_a_growing_business(report: HoldoutReport) -> None:
    holdout = {c.candidate: c.holdout for c in report.candidates}
    bg, sup = holdout[BG], holdout[SUPERVISED]
    assert bg is not None and sup is not None
    # The world really grows: BG/NBD, fitted on the whole history, falls well short ...
    assert bg.relative_error < -0.2
    # ... while the model trained on the last window follows most of the growth (-12% here,
    # BG/NBD -27%: customers heavier than any seen in training are flattened by the trees).
    assert abs(sup.relative_error) < 0.15
    assert abs(sup.relative_error) < abs(bg.relative_error) - 0.1
    assert sup.correlation > 0.5
    # The choice split shows the same, so the choice (not the holdout) picks it.
    assert report.chosen == SUPERVISED.label
    assert report.relative_error == pytest.approx(sup.relative_error)


def test_the_choice_never_reads_the_reported_holdout(
    growing: pl.DataFrame, report: HoldoutReport
) -> None:
    # Every purchase after the calibration end moved a week later and one in three dropped:
    # a different holdout, the same history up to CALIBRATION_END.
    after = pl.col("timestamp").dt.date() > CALIBRATION_END
    changed = pl.concat(
        [
            growing.filter(~after),
            growing.filter(after)
            .gather_every(3)
            .with_columns(pl.col("timestamp") + timedelta(days=7)),
        ]
    )
    config = AnalyticsConfig(candidates=(BG, SUPERVISED))
    other = holdout_check(changed, CALIBRATION_END, HOLDOUT_END, config)
    assert other.actual != report.actual
    assert other.model.model == report.model.model
    assert other.model.params == report.model.params

    def choice(r: HoldoutReport) -> list[object]:  # every choice-split figure
        return [(c.candidate, c.params, c.selection, c.error) for c in r.model.candidates]

    assert choice(other) == choice(report)
    assert other.predicted == pytest.approx(report.predicted)


def test_window_features_and_horizons(growing: pl.DataFrame) -> None:
    days = purchase_days(growing)
    config = AnalyticsConfig(candidates=(SUPERVISED,))
    # W is the horizon, at most half of the history (first purchase to end).
    assert window_days(days, CALIBRATION_END, 90) == 90
    assert window_days(days, CALIBRATION_END, 1_000) == 180
    with pytest.raises(AnalyticsError, match="too short"):
        fit_forecaster(SUPERVISED, days, START + timedelta(days=10), config, None, 90)
    summary = buyer_summary(days, CALIBRATION_END)
    x = features(days, summary, CALIBRATION_END, np.zeros(summary.height))
    assert x.shape == (summary.height, len(FEATURES))
    recent = dict(zip(FEATURES, x[0], strict=True))
    assert recent["days_last_4w"] <= recent["days_last_13w"] <= recent["days_last_26w"]
    assert recent["days_last_26w"] <= recent["frequency"] + 1

    model = fit_forecaster(SUPERVISED, days, CALIBRATION_END, config, None, 90)
    assert model.params["window_days"] == 90
    short = model.predict(summary, CALIBRATION_END, 90)
    long = model.predict(summary, CALIBRATION_END, 180, discount=0.2)
    assert np.isfinite(short.expected).all() and (short.expected >= 0).all()
    # Beyond the window, BG/NBD's shape extends each customer's count; discounting lowers it.
    assert long.expected.sum() > 1.5 * short.expected.sum()
    assert (long.discounted <= long.expected + 1e-9).all()
    assert long.discounted.sum() < long.expected.sum()
    assert ((long.p_alive >= 0) & (long.p_alive <= 1)).all()


def test_analyze_reports_the_supervised_model(growing: pl.DataFrame) -> None:
    config = AnalyticsConfig(candidates=(BG, SUPERVISED), annual_discount_rate=0.1)
    result = analyze(growing, HOLDOUT_END, 90, config=config)
    assert result.model is not None and result.model.model == SUPERVISED
    assert result.model.params["window_days"] == 90
    table = result.table
    assert table["expected_purchases"].null_count() == 0
    assert table["clv"].null_count() == 0 and (table["clv"] >= 0).all()
    assert ((table["p_alive"] >= 0) & (table["p_alive"] <= 1)).all()

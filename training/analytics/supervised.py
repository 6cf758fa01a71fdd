"""The supervised, time-shifted repeat-buying forecaster: "what customers like this bought next".

Fitted at ``end`` for a horizon H, it takes a window W = min(H, half the history) and learns,
on the buyers up to ``end - W``, their purchase days in (end - W, end] from their features at
``end - W``; then it is applied to the buyers' features at ``end``. Because it learns from the
latest complete window, it follows the business's recent level where the BTYD models, fitted
on the whole history, assume stationary rates and a fixed dropout. The learner is
scikit-learn's `HistGradientBoostingRegressor` with a Poisson loss (a count target, log link).

Two boosted models share the features and the target:

- the **level** model learns the count itself; its sum over the customers is the forecast total;
- the **allocation** model learns the count relative to the customer's smoothed lifetime rate,
  W x (repeat purchase days + 0.5) / (days since the first purchase + 30) (a Poisson offset,
  fitted as target / base with the base as weight). Trees cannot predict beyond the counts seen
  in their leaves, which flattens the heaviest buyers, who dominate a per-customer correlation;
  the base carries them instead, and the trees only correct it (recency, trend, ...).

Each customer's forecast is their allocation model's prediction, scaled so that the total is the
level model's: one model for how much the base will buy, one for who buys it.

Features (`FEATURES`) describe behaviour, not age: repeat purchase days, days since the last
one, mean spend (NaN when unknown; the boosting handles missing values), purchase days in the
last 4, 13 and 26 weeks, the trend (last 13 weeks minus the 13 before), BG/NBD's expectation
over W and the smoothed rate. Age (T) is left out on purpose: every customer at ``end`` is W
days older than any training customer was, and trees cannot extrapolate, so an age feature
would treat all of them as the oldest customers seen in training.

Horizons beyond W use the shape of BG/NBD fitted at ``end``: a customer's prediction over H is
the learned count over W times their BG/NBD expectation over H divided by that over W (linear
scaling H / W where BG/NBD is undefined). Discounting and P(alive) are BG/NBD's as well.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from training.analytics.btyd import Predictions, fit_candidate, predict
from training.analytics.config import AnalyticsConfig, AnalyticsError, Candidate
from training.analytics.fitting import F64, fit_sample
from training.analytics.summaries import actual_purchases, buyer_summary

FEATURES: tuple[str, ...] = (
    "frequency",
    "recency_days",
    "monetary",
    "days_last_4w",
    "days_last_13w",
    "days_last_26w",
    "trend_13w",
    "bgnbd_window",
    "smoothed_rate",
)
MIN_WINDOW_DAYS = 7
# The boosting's settings: a slow rate and enough leaves; early stopping (scikit-learn's
# "auto", on above 10,000 training customers) picks the number of trees.
BOOSTING: dict[str, Any] = {
    "loss": "poisson",
    "learning_rate": 0.05,
    "max_iter": 200,
    "min_samples_leaf": 50,
}
# BG/NBD gives a feature, the shape beyond the window and P(alive): the first of these that
# fits (plain BG/NBD does not converge when hardly anyone drops out).
REFERENCES = (Candidate("bgnbd"), Candidate("bgnbd", 0.001), Candidate("bgnbd", 0.01))


def smoothed_rate(summary: pl.DataFrame) -> F64:
    """Repeat purchase days per day since the first purchase, shrunk towards 0 for newcomers."""
    x = summary["x"].to_numpy().astype(np.float64)
    return (x + 0.5) / (summary["T"].to_numpy().astype(np.float64) + 30.0)


def features(days: pl.DataFrame, summary: pl.DataFrame, end: date, bgnbd_window: F64) -> F64:
    """One row per row of ``summary`` (the buyers at ``end``), columns as `FEATURES`."""
    recent = {
        w: actual_purchases(days, summary, end - timedelta(days=7 * w), end) for w in (4, 13, 26)
    }
    x = summary["x"].to_numpy().astype(np.float64)
    recency = (summary["T"] - summary["tx"]).to_numpy().astype(np.float64)
    monetary = summary["monetary"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    trend = recent[13] - (recent[26] - recent[13])
    columns = (
        x,
        recency,
        monetary,
        recent[4],
        recent[13],
        recent[26],
        trend,
        bgnbd_window,
        smoothed_rate(summary),
    )
    return np.column_stack(columns).astype(np.float64)


def one_thread() -> Any:
    """scikit-learn's boosting runs OpenMP threads that spin while they wait: on a busy machine
    (2 cores, a load of 10) a fit took 22 s with them and 2.6 s on one thread. These models
    are small (one row per customer, 9 features), so one thread it is."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def first_reference(fit: Callable[[Candidate], Any], end: date) -> Any:
    """``fit`` applied to the first of `REFERENCES` that fits at ``end``."""
    failures = []
    for candidate in REFERENCES:
        try:
            return fit(candidate)
        except AnalyticsError as exc:
            failures.append(str(exc))
    raise AnalyticsError(f"supervised model: no BG/NBD reference at {end}: {failures[-1]}")


def window_days(days: pl.DataFrame, end: date, horizon_days: int | None) -> int:
    """W: the horizon (half the history when not given), at most half of the history."""
    first: date | None = days.filter(pl.col("day") <= end).select(pl.col("day").min()).item()
    if first is None:
        raise AnalyticsError(f"no purchase up to {end}")
    half = (end - first).days // 2
    window = half if horizon_days is None else min(horizon_days, half)
    if window < MIN_WINDOW_DAYS:
        raise AnalyticsError(
            f"supervised model: history up to {end} too short for a {MIN_WINDOW_DAYS}-day "
            "training window"
        )
    return window


@dataclass(frozen=True)
class SupervisedModel:
    level: Any  # HistGradientBoostingRegressor: purchase days over the window
    allocation: Any  # the same, relative to the smoothed rate over the window
    reference: Any  # BG/NBD (lifetimes) fitted at the application end
    days: pl.DataFrame  # purchase days, for the window-count features at prediction time
    window_days: int
    train_customers: int

    @property
    def params(self) -> dict[str, float]:
        return {
            "window_days": float(self.window_days),
            "train_customers": float(self.train_customers),
            "level_trees": float(self.level.n_iter_),
            "allocation_trees": float(self.allocation.n_iter_),
        }

    def predict(
        self, summary: pl.DataFrame, end: date, horizon_days: int, discount: float = 0.0
    ) -> Predictions:
        window = predict(self.reference, summary, self.window_days).expected
        x = features(self.days, summary, end, window)
        with one_thread():
            level = float(np.sum(self.level.predict(x)))
            learned = np.asarray(self.allocation.predict(x), dtype=np.float64)
        learned *= self.window_days * smoothed_rate(summary)
        learned *= level / max(float(learned.sum()), 1e-12)
        full = predict(self.reference, summary, horizon_days, discount)
        usable = np.isfinite(full.expected) & np.isfinite(window) & (window > 1e-12)
        safe = np.where(usable, window, 1.0)
        shape = np.where(usable, full.expected / safe, horizon_days / self.window_days)
        expected = learned * shape
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(usable & (full.expected > 1e-12), full.discounted / full.expected, 1.0)
        return Predictions(expected, expected * ratio, full.p_alive)


def fit_supervised(
    days: pl.DataFrame,
    end: date,
    horizon_days: int | None,
    config: AnalyticsConfig,
    reference: Any,
) -> SupervisedModel:
    """Learn purchase days in (end - W, end] from features at end - W (module docstring);
    ``reference`` is BG/NBD fitted at ``end``. AnalyticsError when it cannot be fitted."""
    window = window_days(days, end, horizon_days)
    start = end - timedelta(days=window)
    train = fit_sample(buyer_summary(days, start), config)
    repeaters = int((train["x"] > 0).sum())
    if repeaters < config.min_repeat_customers:
        raise AnalyticsError(
            f"supervised model: {repeaters} repeat buyers up to {start}, need "
            f"{config.min_repeat_customers}"
        )
    earlier = first_reference(lambda c: fit_candidate(c, train), start)
    x = features(days, train, start, predict(earlier, train, window).expected)
    y = actual_purchases(days, train, start, end)
    from sklearn.ensemble import HistGradientBoostingRegressor  # ~0.5 s: import on first use

    level = HistGradientBoostingRegressor(**BOOSTING, random_state=config.seed)
    allocation = HistGradientBoostingRegressor(**BOOSTING, random_state=config.seed)
    base = window * smoothed_rate(train)
    try:
        with one_thread():
            level.fit(x, y)
            allocation.fit(x, y / base, sample_weight=base)  # Poisson with offset log(base)
    except ValueError as exc:  # no purchase at all in the window, ...
        raise AnalyticsError(f"supervised model did not fit: {exc}") from exc
    return SupervisedModel(level, allocation, reference, days, window, train.height)

"""A fitted candidate, whatever its kind, behind one ``predict``:

- a BTYD model on purchase **days** (lifetimes' convention, btyd.py);
- the same model on purchase **weeks** ("weekly aggregation": a customer's purchase days
  grouped into 7-day blocks counted from their first purchase, time in weeks). Fewer, coarser
  events flatten the fitted dropout; predictions (purchase weeks) are converted back to
  purchase days by the ratio of repeat purchase days to repeat purchase weeks in the fit;
- the **supervised** model (supervised.py): learned on an earlier window of the same history,
  with BG/NBD (fitted here too) as a feature and as the shape beyond that window;
- the **ensemble**: BG/NBD's per-customer allocation (so its per-customer correlation is
  BG/NBD's) scaled to the mean total predicted by every other candidate that fits: model
  averaging of the level, which no single candidate gets right across horizons.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import polars as pl

from training.analytics.btyd import Predictions, fit_candidate, predict
from training.analytics.config import AnalyticsConfig, AnalyticsError, Candidate
from training.analytics.fitting import fit_sample, fitted_params
from training.analytics.summaries import buyer_summary
from training.analytics.supervised import SupervisedModel, first_reference, fit_supervised

ALLOCATION = Candidate("bgnbd")  # the ensemble's per-customer shares


def weekly_summary(days: pl.DataFrame, end: date, customers: pl.DataFrame) -> pl.DataFrame:
    """x (repeat purchase weeks), tx and T in weeks, for ``customers`` (their order kept)."""
    first = pl.col("day").min().over("customer_id")
    weeks = (
        days.filter(pl.col("day") <= end)
        .join(customers.select("customer_id"), on="customer_id", how="semi")
        .with_columns(
            ((pl.col("day") - first).dt.total_days() // 7).alias("week"),
            first.alias("first_day"),
        )
        .group_by("customer_id")
        .agg(
            (pl.col("week").n_unique() - 1).cast(pl.Int64).alias("x"),
            (pl.col("week").max().cast(pl.Float64)).alias("tx"),
            ((pl.lit(end) - pl.col("first_day").first()).dt.total_days() / 7.0).alias("T"),
        )
    )
    return customers.select("customer_id").join(
        weeks, on="customer_id", how="left", maintain_order="left"
    )


@dataclass(frozen=True)
class Forecaster:
    candidate: Candidate
    fitter: Any = None  # the lifetimes fitter (None for the ensemble)
    days: pl.DataFrame | None = None  # purchase days, for the weekly grain's summaries
    days_per_week: float = 1.0  # repeat purchase days per repeat purchase week in the fit
    members: tuple[Forecaster, ...] = ()  # the ensemble's; members[0] allocates
    supervised: SupervisedModel | None = None

    @property
    def params(self) -> dict[str, float]:
        if self.candidate.model == "ensemble":
            return {"members": float(len(self.members) - 1)}
        if self.supervised is not None:
            return self.supervised.params
        params = fitted_params(self.fitter)
        if self.candidate.grain == "week":
            params["days_per_week"] = self.days_per_week
        return params

    def predict(
        self, summary: pl.DataFrame, end: date, horizon_days: int, discount: float = 0.0
    ) -> Predictions:
        """Per row of ``summary`` (the buyers at ``end``): repeat purchase days over the
        horizon, discounted, and P(alive)."""
        if self.candidate.model == "ensemble":
            allocation, *others = self.members
            base = allocation.predict(summary, end, horizon_days, discount)
            totals = []
            for m in others:
                expected = m.predict(summary, end, horizon_days).expected
                if np.isfinite(expected).all():  # BG/NBD can be undefined for some buyers
                    totals.append(float(expected.sum()))
            if not totals or not np.isfinite(base.expected).all():
                nan = np.full(summary.height, np.nan)
                return Predictions(nan, nan, base.p_alive)
            scale = float(np.mean(totals)) / max(float(base.expected.sum()), 1e-12)
            return Predictions(base.expected * scale, base.discounted * scale, base.p_alive)
        if self.supervised is not None:
            return self.supervised.predict(summary, end, horizon_days, discount)
        if self.candidate.grain == "day":
            return predict(self.fitter, summary, horizon_days, discount)
        assert self.days is not None
        weekly = weekly_summary(self.days, end, summary)
        pred = predict(self.fitter, weekly, max(1, round(horizon_days / 7)), discount)
        k = self.days_per_week
        return Predictions(pred.expected * k, pred.discounted * k, pred.p_alive)


Fits = dict[Candidate, "Forecaster | AnalyticsError"]  # fits at one end, shared by callers


def fit_forecaster(
    candidate: Candidate,
    days: pl.DataFrame,
    end: date,
    config: AnalyticsConfig,
    fits: Fits | None = None,
    horizon_days: int | None = None,
) -> Forecaster:
    """Fit ``candidate`` on the buyers up to ``end`` (a sample of them above
    ``config.max_fit_customers``); AnalyticsError when it cannot be fitted. ``fits`` keeps
    every fit (and failure) at this ``end``, so the ensemble reuses its members'.
    ``horizon_days`` (the forecast's) sets the supervised model's training window; the
    others ignore it."""
    if fits is not None and candidate in fits:
        known = fits[candidate]
        if isinstance(known, AnalyticsError):
            raise known
        return known
    try:
        result = _fit(candidate, days, end, config, fits, horizon_days)
    except AnalyticsError as exc:
        if fits is not None:
            fits[candidate] = exc
        raise
    if fits is not None:
        fits[candidate] = result
    return result


def _fit(
    candidate: Candidate,
    days: pl.DataFrame,
    end: date,
    config: AnalyticsConfig,
    fits: Fits | None,
    horizon_days: int | None,
) -> Forecaster:
    if candidate.model == "supervised":
        reference = first_reference(lambda c: fit_forecaster(c, days, end, config, fits), end)
        model = fit_supervised(days, end, horizon_days, config, reference.fitter)
        return Forecaster(candidate, supervised=model)
    summary = fit_sample(buyer_summary(days, end), config)
    if candidate.model == "ensemble":
        others = [c for c in config.candidates if c.model != "ensemble" and c != ALLOCATION]
        members = [fit_forecaster(ALLOCATION, days, end, config, fits)]
        for c in others:
            try:
                members.append(fit_forecaster(c, days, end, config, fits, horizon_days))
            except AnalyticsError:
                continue  # averaging what fits
        if len(members) < 2:
            raise AnalyticsError("the ensemble needs at least one other candidate that fits")
        return Forecaster(candidate, members=tuple(members))
    if candidate.grain == "day":
        return Forecaster(candidate, fit_candidate(candidate, summary))
    weekly = weekly_summary(days, end, summary)
    repeat_weeks = float(weekly["x"].sum())
    if repeat_weeks <= 0:
        raise AnalyticsError(f"{candidate.label}: no repeat purchase week")
    ratio = float(summary["x"].sum()) / repeat_weeks
    return Forecaster(candidate, fit_candidate(candidate, weekly), days, ratio)

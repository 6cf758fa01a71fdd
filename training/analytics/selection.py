"""The choice of the repeat-buying model on a holdout carved from the history.

The candidates (BG/NBD, MBG/NBD, Pareto/NBD, with penalizers, on days or weeks; the supervised
model; the ensemble) are fitted on the history up to
``end - L`` and scored on the following ``L`` days (L = the horizon, at most half of the
history); the one with the smallest relative error of the total holdout repeat purchases wins,
ties (within ``tie_tolerance``) going to the higher per-customer correlation. It is then refitted
on the whole history up to ``end``. Optionally the ratio actual / predicted seen on that earlier
split is kept as a bias correction.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from training.analytics.config import AnalyticsConfig, AnalyticsError, Candidate
from training.analytics.fitting import F64, fit_sample
from training.analytics.forecasters import Fits, Forecaster, fit_forecaster
from training.analytics.spend import Spend, fit_spend
from training.analytics.summaries import actual_purchases, buyer_summary


@dataclass(frozen=True)
class Metrics:
    """Predicted against actual repeat purchase days of one holdout window."""

    customers: int
    actual: float
    predicted: float
    relative_error: float  # (predicted - actual) / actual; nan when actual is 0
    correlation: float  # Pearson, per customer; nan when undefined
    mae: float  # mean absolute error per customer


@dataclass(frozen=True)
class CandidateResult:
    candidate: Candidate
    params: dict[str, float]
    selection: Metrics | None  # on the choice split (what the choice used)
    holdout: Metrics | None = None  # on the reported holdout (holdout_check only; not used)
    error: str | None = None  # why it could not be fitted or scored
    seconds: float = 0.0


@dataclass(frozen=True)
class ModelInfo:
    """The fitted repeat-buying and spend models, and how the choice was made."""

    model: Candidate
    params: dict[str, float]
    fit_end: date  # the history used ends here (inclusive)
    customers: int  # buyers up to fit_end
    fit_customers: int  # of which the sample the model was fitted on
    selection_end: date | None  # choice split: fitted up to here ...
    selection_holdout_days: int  # ... scored on the next this many days (0 = no choice split)
    bias_scale: float  # predictions are multiplied by this
    spend_model: str  # "gamma-gamma", or "observed mean (<why>)"
    spend_params: dict[str, float]
    candidates: tuple[CandidateResult, ...]
    notes: tuple[str, ...]
    seconds: float


def prediction_metrics(predicted: F64, actual: F64) -> Metrics:
    total_actual, total_predicted = float(actual.sum()), float(predicted.sum())
    rel = (total_predicted - total_actual) / total_actual if total_actual > 0 else math.nan
    corr = math.nan
    if len(actual) > 1 and np.std(actual) > 0 and np.std(predicted) > 0:
        corr = float(np.corrcoef(predicted, actual)[0, 1])
    mae = float(np.mean(np.abs(predicted - actual))) if len(actual) else math.nan
    return Metrics(len(actual), total_actual, total_predicted, rel, corr, mae)


def rank_candidates(results: list[CandidateResult], tolerance: float) -> list[CandidateResult]:
    """The choice rule: smallest |relative error of the total|; candidates within
    ``tolerance`` of it are tied and ordered by per-customer correlation (higher first)."""
    ok = [
        r for r in results if r.selection is not None and math.isfinite(r.selection.relative_error)
    ]
    if not ok:
        return []

    def err(r: CandidateResult) -> float:
        assert r.selection is not None
        return abs(r.selection.relative_error)

    def corr(r: CandidateResult) -> float:
        assert r.selection is not None
        c = r.selection.correlation
        return c if math.isfinite(c) else -math.inf

    best = min(err(r) for r in ok)
    tied = [r for r in ok if err(r) <= best + tolerance]
    rest = [r for r in ok if err(r) > best + tolerance]
    return sorted(tied, key=corr, reverse=True) + sorted(rest, key=err)


@dataclass(frozen=True)
class FittedModel:
    fitter: Forecaster
    info: ModelInfo
    spend: Spend
    fits: Fits  # every candidate fitted at ``info.fit_end`` on the way (holdout_check reuses them)


def fit_model(
    days: pl.DataFrame, end: date, horizon_days: int, config: AnalyticsConfig
) -> FittedModel:
    """Choose a candidate on a split of the history up to ``end`` and refit it on all of it."""
    start = time.perf_counter()
    summary = buyer_summary(days, end)
    repeaters = int((summary["x"] > 0).sum())
    if repeaters < config.min_repeat_customers:
        raise AnalyticsError(
            f"{repeaters} customers with a repeat purchase day up to {end}; the models need at "
            f"least {config.min_repeat_customers}"
        )
    first: date = summary.select(pl.col("first_day").min()).item()
    span = (end - first).days
    length = config.selection_holdout_days or min(horizon_days, span // 2)
    notes: list[str] = []
    results: list[CandidateResult] = []
    selection_end: date | None = None
    if length >= 1 and span - length >= 1:
        selection_end = end - timedelta(days=length)
        inner = buyer_summary(days, selection_end)
        if int((inner["x"] > 0).sum()) >= config.min_repeat_customers:
            actual = actual_purchases(days, inner, selection_end, end)
            inner_fits: Fits = {}
            for c in config.candidates:
                t0 = time.perf_counter()
                try:
                    fitter = fit_forecaster(c, days, selection_end, config, inner_fits, length)
                    pred = fitter.predict(inner, selection_end, length).expected
                    if not np.isfinite(pred).all():
                        bad = int((~np.isfinite(pred)).sum())
                        raise AnalyticsError(f"undefined predictions for {bad} customers")
                    results.append(
                        CandidateResult(
                            c,
                            fitter.params,
                            prediction_metrics(pred, actual),
                            None,
                            None,
                            time.perf_counter() - t0,
                        )
                    )
                except AnalyticsError as exc:
                    results.append(
                        CandidateResult(c, {}, None, None, str(exc), time.perf_counter() - t0)
                    )
        else:
            notes.append(f"too few repeat buyers up to {selection_end} for a choice split")
            selection_end = None
    else:
        notes.append(f"history of {span} days too short for a choice split")
    ranked = rank_candidates(results, config.tie_tolerance)
    if selection_end is not None and not ranked:
        notes.append("no candidate could be scored on the choice split; first that fits wins")
    order = [r.candidate for r in ranked] or list(config.candidates)
    scored = {r.candidate: r for r in ranked}

    fit_summary = fit_sample(summary, config)
    failures: list[str] = []
    fits: Fits = {}
    for candidate in order:
        try:
            fitter = fit_forecaster(candidate, days, end, config, fits, horizon_days)
            check = fitter.predict(summary, end, horizon_days).expected
            if not np.isfinite(check).all():
                raise AnalyticsError(f"{candidate.label}: undefined predictions")
        except AnalyticsError as exc:
            failures.append(str(exc))
            continue
        break
    else:
        raise AnalyticsError("no candidate model could be fitted: " + "; ".join(failures))
    if failures:
        notes.append(f"refit on the whole history failed for: {'; '.join(failures)}")

    scale = 1.0
    chosen = scored.get(candidate)
    if config.bias_correction and chosen is not None and chosen.selection is not None:
        sel = chosen.selection
        if sel.actual >= config.min_bias_purchases and sel.predicted > 0:
            limit = config.max_bias_correction
            scale = float(np.clip(sel.actual / sel.predicted, 1 / limit, limit))
        else:
            notes.append(
                f"no bias correction: {sel.actual:.0f} purchases on the choice split "
                f"(need {config.min_bias_purchases})"
            )
    if candidate.model == "bgnbd" and candidate.grain == "day":
        notes.append(
            "BG/NBD: customers without a repeat purchase have p_alive 1 (no dropout "
            "before a repeat purchase in that model)"
        )
    spend = fit_spend(summary, config)
    info = ModelInfo(
        model=candidate,
        params=fitter.params,
        fit_end=end,
        customers=summary.height,
        fit_customers=fit_summary.height,
        selection_end=selection_end,
        selection_holdout_days=length if selection_end is not None else 0,
        bias_scale=scale,
        spend_model=spend.kind,
        spend_params=spend.params,
        candidates=tuple(results),
        notes=tuple(notes),
        seconds=time.perf_counter() - start,
    )
    return FittedModel(fitter, info, spend, fits)

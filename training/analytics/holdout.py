"""`holdout_check`: the model choice run at a past ``calibration_end`` and scored on the
holdout after it, which the choice never saw."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from training.analytics.config import DEFAULT_CONFIG, AnalyticsConfig, AnalyticsError
from training.analytics.forecasters import fit_forecaster
from training.analytics.selection import (
    CandidateResult,
    Metrics,
    ModelInfo,
    fit_model,
    prediction_metrics,
)
from training.analytics.summaries import actual_purchases, buyer_summary, purchase_days


@dataclass(frozen=True)
class HoldoutReport:
    """The model choice run at ``calibration_end`` and checked on the holdout after it.

    Customers are those with a purchase up to ``calibration_end``; their purchase days in
    (calibration_end, holdout_end] are the actual repeat purchases.
    """

    calibration_end: date
    holdout_end: date
    customers: int
    model: ModelInfo
    actual: float
    predicted: float  # chosen model, bias correction included
    predicted_uncorrected: float
    relative_error: float
    correlation: float
    mae: float
    candidates: tuple[CandidateResult, ...]
    seconds: float

    @property
    def chosen(self) -> str:
        return self.model.model.label

    def format(self) -> str:
        """A plain-text table: each candidate on the choice split and on this holdout."""
        m = self.model
        head = (
            f"CLV holdout check: {self.customers:,} customers, calibration to "
            f"{self.calibration_end}, holdout to {self.holdout_end} "
            f"({(self.holdout_end - self.calibration_end).days} days)"
        )
        if m.selection_end is not None:
            head += (
                f"\nmodel choice: fitted to {m.selection_end}, scored on the next "
                f"{m.selection_holdout_days} days (smallest |total error|, ties within "
                f"tolerance by correlation); holdout figures below were not used"
            )
        rows = [
            (
                "candidate",
                "choice err",
                "choice corr",
                "holdout pred",
                "holdout err",
                "holdout corr",
            )
        ]
        for c in self.candidates:
            s, h = c.selection, c.holdout
            mark = " *" if c.candidate == m.model else ""
            rows.append(
                (
                    c.candidate.label + mark,
                    _pct(s.relative_error) if s else (c.error or "-")[:40],
                    f"{s.correlation:.4f}" if s else "-",
                    f"{h.predicted:,.0f}" if h else "-",
                    _pct(h.relative_error) if h else "-",
                    f"{h.correlation:.4f}" if h else "-",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [head, ""]
        for r in rows:
            lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
        lines.append("")
        lines.append(
            f"chosen: {self.chosen} (bias scale {m.bias_scale:.3f}); actual {self.actual:,.0f}, "
            f"predicted {self.predicted:,.0f} (uncorrected {self.predicted_uncorrected:,.0f}), "
            f"error {_pct(self.relative_error)}, correlation {self.correlation:.4f}, "
            f"MAE {self.mae:.3f}"
        )
        lines.extend(f"note: {n}" for n in m.notes)
        return "\n".join(lines)


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x * 100:+.1f}%"


def holdout_split(interactions: pl.DataFrame, holdout_fraction: float = 0.5) -> tuple[date, date]:
    """(calibration_end, holdout_end) for `holdout_check`: the holdout is the last
    ``holdout_fraction`` of the days from the first to the last purchase."""
    if not 0 < holdout_fraction < 1:
        raise AnalyticsError("holdout_fraction must be between 0 and 1")
    days = purchase_days(interactions)
    if days.height == 0:
        raise AnalyticsError("no purchases")
    first: date = days.select(pl.col("day").min()).item()
    last: date = days.select(pl.col("day").max()).item()
    holdout = int((last - first).days * holdout_fraction)
    if holdout < 1:
        raise AnalyticsError("purchases span too few days for a holdout")
    return last - timedelta(days=holdout), last


def holdout_check(
    interactions: pl.DataFrame,
    calibration_end: date,
    holdout_end: date,
    config: AnalyticsConfig = DEFAULT_CONFIG,
    evaluate_candidates: bool = True,
) -> HoldoutReport:
    """Validate the repeat-buying model as `compute` would build it at ``calibration_end``.

    The model is chosen and fitted exactly as by `compute` (as_of = calibration_end, horizon =
    the holdout length), seeing nothing after ``calibration_end``; then its predicted repeat
    purchase days in (calibration_end, holdout_end] are compared with the actual ones, for
    every customer with a purchase up to calibration_end: relative error of the total,
    per-customer Pearson correlation and MAE. With ``evaluate_candidates`` every candidate is
    also refitted on the whole calibration window and scored on the holdout, for the table
    only (uncorrected; the choice never sees these figures). Raises AnalyticsError when no
    model can be fitted.
    """
    config.validate()
    if holdout_end <= calibration_end:
        raise AnalyticsError("holdout_end must be after calibration_end")
    start = time.perf_counter()
    days = purchase_days(interactions, as_of=holdout_end)
    horizon = (holdout_end - calibration_end).days
    fitted = fit_model(days, calibration_end, horizon, config)
    summary = buyer_summary(days, calibration_end)
    actual = actual_purchases(days, summary, calibration_end, holdout_end)
    raw = fitted.fitter.predict(summary, calibration_end, horizon).expected
    scale = fitted.info.bias_scale
    chosen = prediction_metrics(raw * scale, actual)
    candidates: list[CandidateResult] = []
    by_candidate = {r.candidate: r for r in fitted.info.candidates}
    for c in config.candidates:
        result = by_candidate.get(c, CandidateResult(c, {}, None, None, "not scored"))
        if evaluate_candidates:
            try:
                fitter = fit_forecaster(c, days, calibration_end, config, fitted.fits, horizon)
                pred = fitter.predict(summary, calibration_end, horizon).expected
                if np.isfinite(pred).all():
                    result = _replace_holdout(result, prediction_metrics(pred, actual))
            except AnalyticsError:
                pass  # the selection column already shows whether it fits
        candidates.append(result)
    return HoldoutReport(
        calibration_end=calibration_end,
        holdout_end=holdout_end,
        customers=summary.height,
        model=fitted.info,
        actual=chosen.actual,
        predicted=chosen.predicted,
        predicted_uncorrected=float(raw.sum()),
        relative_error=chosen.relative_error,
        correlation=chosen.correlation,
        mae=chosen.mae,
        candidates=tuple(candidates),
        seconds=time.perf_counter() - start,
    )


def _replace_holdout(result: CandidateResult, holdout: Metrics) -> CandidateResult:
    return CandidateResult(
        result.candidate, result.params, result.selection, holdout, result.error, result.seconds
    )

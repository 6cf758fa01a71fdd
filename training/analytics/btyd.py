"""The repeat-buying ("buy till you die") models: fit one candidate (BG/NBD, MBG/NBD or
Pareto/NBD) and predict expected purchases and P(alive) with it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from training.analytics import bgnbd
from training.analytics.config import AnalyticsError, Candidate
from training.analytics.fitting import F64, fitted_params, load_lifetimes, quiet
from training.analytics.pareto import fit_pareto, pareto_alive


def fit_candidate(candidate: Candidate, summary: pl.DataFrame) -> Any:
    """Fit one candidate on the buyers in ``summary``; AnalyticsError when it cannot be."""
    # Customers with the same (x, tx, T) share a likelihood term: fit on distinct patterns
    # with counts as weights (lifetimes supports this), several times fewer rows.
    patterns = summary.group_by("x", "tx", "T").agg(pl.len().alias("w")).sort("x", "tx", "T")
    if patterns.height == 0 or int(patterns.select(pl.col("T").max()).item()) < 1:
        raise AnalyticsError("no buyer has more than one day of history")
    lt = load_lifetimes()
    cls = {
        "bgnbd": lt.BetaGeoFitter,
        "mbgnbd": lt.ModifiedBetaGeoFitter,
        "paretonbd": lt.ParetoNBDFitter,
    }[candidate.model]
    fitter = cls(penalizer_coef=candidate.penalizer)
    x = patterns["x"].to_numpy()
    tx = patterns["tx"].to_numpy().astype(np.float64)
    big_t = patterns["T"].to_numpy().astype(np.float64)
    weights = patterns["w"].to_numpy().astype(np.float64)
    try:
        with quiet():
            if candidate.model == "paretonbd":
                fit_pareto(fitter, x, tx, big_t, weights, candidate.penalizer)
            else:
                fitter.fit(x, tx, big_t, weights=weights)
    except Exception as exc:  # a third-party optimiser: ConvergenceError, LinAlgError, ...
        raise AnalyticsError(f"{candidate.label} did not fit: {type(exc).__name__}: {exc}") from exc
    params = fitted_params(fitter)
    if not params or any(not math.isfinite(v) or v <= 0 for v in params.values()):
        raise AnalyticsError(f"{candidate.label} fitted unusable parameters {params}")
    return fitter


@dataclass(frozen=True)
class Predictions:
    expected: F64  # repeat purchase days over the horizon, uncorrected
    discounted: F64  # the same with each 30-day step discounted (== expected at rate 0)
    p_alive: F64


def predict(
    fitter: Any, summary: pl.DataFrame, horizon_days: int, annual_discount_rate: float = 0.0
) -> Predictions:
    """Per row of ``summary``; computed once per distinct (x, tx, T). Where lifetimes' closed
    forms are NaN, the expectation comes from training.analytics.bgnbd (BG/NBD) or
    pareto_alive (Pareto/NBD); any value still not finite is NaN."""
    keys = summary.select("x", "tx", "T")
    patterns = keys.unique().sort("x", "tx", "T")
    x = patterns["x"].to_numpy()
    tx = patterns["tx"].to_numpy().astype(np.float64)
    big_t = patterns["T"].to_numpy().astype(np.float64)

    params = fitted_params(fitter)
    # lifetimes' Pareto/NBD computes A_0 as a difference of two equal hypergeometric terms when
    # the last purchase is on the last day (tx == T), which is NaN for heavy buyers; the
    # customer is then alive for certain, and the expectation has a closed form.
    certain = (tx == big_t) if "s" in params else np.zeros(len(x), dtype=bool)
    # MBG/NBD subclasses BG/NBD in lifetimes but has another expectation: the exact class.
    is_bgnbd = type(fitter) is load_lifetimes().BetaGeoFitter
    with quiet():
        alive = np.asarray(fitter.conditional_probability_alive(x, tx, big_t), dtype=np.float64)
    alive = np.where(certain & ~np.isfinite(alive.reshape(len(x))), 1.0, alive.reshape(len(x)))

    def expected_at(t: float) -> F64:
        with quiet():
            out = fitter.conditional_expected_number_of_purchases_up_to_time(t, x, tx, big_t)
        values = np.array(out, dtype=np.float64).reshape(len(x))
        if certain.any():
            values = np.where(
                certain & ~np.isfinite(values), pareto_alive(params, x, big_t, t), values
            )
        undefined = ~np.isfinite(values)
        if is_bgnbd and undefined.any():
            values[undefined] = alive[undefined] * bgnbd.expected_if_alive(
                params, x[undefined], big_t[undefined], t
            )
        return values

    expected = expected_at(float(horizon_days))
    if annual_discount_rate > 0:
        # Purchases of each 30-day step are discounted to as_of from the step's end.
        discounted = np.zeros(len(x))
        previous = np.zeros(len(x))
        for end in [*range(30, horizon_days, 30), horizon_days]:
            now = expected if end == horizon_days else expected_at(float(end))
            discounted += (now - previous) / (1 + annual_discount_rate) ** (end / 365.0)
            previous = now
    else:
        discounted = expected
    table = patterns.with_columns(
        pl.Series("e", expected), pl.Series("d", discounted), pl.Series("a", alive)
    )
    joined = keys.join(table, on=["x", "tx", "T"], how="left", maintain_order="left")

    def clean(col: str, lo: float, hi: float) -> F64:
        v = joined[col].to_numpy().astype(np.float64)
        bad = ~np.isfinite(v) | (v < lo - 1e-9) | (v > hi + 1e-9)
        return np.where(bad, np.nan, np.clip(v, lo, hi))

    return Predictions(clean("e", 0, np.inf), clean("d", 0, np.inf), clean("a", 0, 1))

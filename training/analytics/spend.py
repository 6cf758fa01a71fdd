"""Expected spend per purchase day for CLV.

Gamma-Gamma (lifetimes), fitted on repeat buyers' mean spend over their repeat days; when its
assumption (spend independent of frequency) fails or it does not fit, each customer's observed
mean spend is used instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from training.analytics.config import AnalyticsConfig
from training.analytics.fitting import F64, fit_sample, fitted_params, load_lifetimes, quiet


@dataclass(frozen=True)
class Spend:
    """Expected spend per future purchase day."""

    kind: str
    params: dict[str, float]
    fitter: Any = None
    population_mean: float = math.nan

    def expected(self, summary: pl.DataFrame) -> F64:
        if self.fitter is not None:
            gg_x = summary["gg_x"].fill_null(0).to_numpy().astype(np.float64)
            gg_m = summary["gg_m"].fill_null(0.0).to_numpy().astype(np.float64)
            usable = (gg_x > 0) & (gg_m > 0)
            with quiet():
                posterior = np.asarray(
                    self.fitter.conditional_expected_average_profit(
                        np.where(usable, gg_x, 1.0), np.where(usable, gg_m, 1.0)
                    ),
                    dtype=np.float64,
                )
            # No usable repeat spend: the model's population mean (its x = 0 posterior).
            return np.where(usable, posterior, self.population_mean)
        observed = summary["monetary"].to_numpy().astype(np.float64)
        return np.where(np.isfinite(observed), observed, self.population_mean)


def fit_spend(summary: pl.DataFrame, config: AnalyticsConfig) -> Spend:
    mean = summary.select(pl.col("monetary").mean()).item()
    population = float(mean) if mean is not None else math.nan
    eligible = summary.filter(
        (pl.col("gg_x") > 0) & pl.col("gg_m").is_not_null() & (pl.col("gg_m") > 0)
    )

    def observed(why: str) -> Spend:
        return Spend(f"observed mean ({why})", {}, None, population)

    if eligible.height < config.min_gg_customers:
        return observed(f"only {eligible.height} repeat buyers with known positive spend")
    freq = eligible["gg_x"].to_numpy().astype(np.float64)
    spend = eligible["gg_m"].to_numpy().astype(np.float64)
    if np.std(freq) > 0 and np.std(spend) > 0:
        corr = float(np.corrcoef(freq, spend)[0, 1])
        # Gamma-Gamma assumes spend per purchase independent of the number of purchases.
        if abs(corr) > config.gg_max_abs_correlation:
            return observed(f"spend and frequency correlate ({corr:+.2f})")
    sample = fit_sample(eligible, config)
    fitter = load_lifetimes().GammaGammaFitter(penalizer_coef=0.0)
    try:
        with quiet():
            # q > 1 keeps the population mean spend finite.
            fitter.fit(sample["gg_x"].to_numpy(), sample["gg_m"].to_numpy(), q_constraint=True)
    except Exception as exc:  # a third-party optimiser
        return observed(f"Gamma-Gamma did not fit: {type(exc).__name__}")
    params = fitted_params(fitter)
    p, q, v = params.get("p", math.nan), params.get("q", math.nan), params.get("v", math.nan)
    if not all(math.isfinite(t) and t > 0 for t in (p, q, v)) or q <= 1:
        return observed(f"Gamma-Gamma fitted unusable parameters {params}")
    return Spend("gamma-gamma", params, fitter, p * v / (q - 1))

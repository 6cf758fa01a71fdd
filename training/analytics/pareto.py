"""Pareto/NBD where lifetimes falls short: our own fit, and the expectation of customers
certain to be alive (where lifetimes' formula is NaN)."""

from __future__ import annotations

from typing import Any

import numpy as np

from training.analytics.config import AnalyticsError
from training.analytics.fitting import F64, I64, quiet


def fit_pareto(fitter: Any, x: I64, tx: F64, big_t: F64, weights: F64, penalizer: float) -> None:
    """Fit Pareto/NBD with lifetimes' likelihood, by L-BFGS-B over log parameters.

    lifetimes' own fit is Nelder-Mead from a random start for up to 2,000 steps: 5-40 s on a
    few thousand customers, and not reproducible. This converges in 100-400 evaluations to the
    same optimum (CDNOW: identical parameters to 4 digits). The penalty is per customer, as
    lifetimes does for BG/NBD (its Pareto/NBD penalty is per sample, far weaker).
    """
    from scipy.optimize import minimize

    scale = 10.0 / float(big_t.max())  # lifetimes' own time scaling, for conditioning
    nll = fitter._negative_log_likelihood
    per_customer = float(weights.mean() / weights.sum())

    def objective(log_params: F64) -> float:
        params = np.exp(log_params)
        value = nll(params, x, tx * scale, big_t * scale, weights, 0.0) * per_customer
        return float(value + penalizer * np.sum(params**2))

    # Bounds keep the hypergeometric terms finite when s and beta run off together (nearly
    # homogeneous dropout); the optimum then sits on the bound, still a usable model.
    result = minimize(objective, np.zeros(4), method="L-BFGS-B", bounds=[(-10.0, 10.0)] * 4)
    if not (result.success and np.isfinite(result.fun)):
        raise AnalyticsError(f"Pareto/NBD did not converge: {result.message}")
    r, alpha, s, beta = np.exp(result.x)
    import pandas as pd

    fitter.params_ = pd.Series(
        [r, alpha / scale, s, beta / scale], index=["r", "alpha", "s", "beta"]
    )


def pareto_alive(params: dict[str, float], x: I64, big_t: F64, t: float) -> F64:
    """Pareto/NBD expected purchases in (T, T + t] of a customer known to be alive at T."""
    r, alpha, s, beta = params["r"], params["alpha"], params["s"], params["beta"]
    with quiet():
        ratio = (beta + big_t) / (beta + big_t + t)
        # (1 - ratio^(s-1)) / (s-1), whose limit at s = 1 is -log(ratio)
        tail = -np.log(ratio) if abs(s - 1) < 1e-9 else (1 - ratio ** (s - 1)) / (s - 1)
        return np.asarray((r + x) / (alpha + big_t) * (beta + big_t) * tail, dtype=np.float64)

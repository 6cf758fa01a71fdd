"""What every lifetimes fit shares: the import on first use, silencing its noise, reading its
parameters, and fitting on a sample of large populations."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from training.analytics.config import AnalyticsConfig

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def load_lifetimes() -> Any:
    """lifetimes, imported on first use (it brings pandas and autograd: ~1 s)."""
    with warnings.catch_warnings():  # it sets a pandas option that pandas 3 deprecates
        warnings.simplefilter("ignore")
        import lifetimes

    return lifetimes


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """lifetimes prints the optimiser's state when a fit fails, warns freely (log of 0 on the
    way to an optimum) and changes the global warning filters; keep all of that in here."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        np.errstate(all="ignore"),
    ):
        warnings.simplefilter("ignore")
        yield


def fit_sample(summary: pl.DataFrame, config: AnalyticsConfig) -> pl.DataFrame:
    """Fits cost time per distinct (x, tx, T); above max_fit_customers, fit on a sample."""
    if summary.height <= config.max_fit_customers:
        return summary
    return summary.sample(n=config.max_fit_customers, seed=config.seed).sort("customer_id")


def fitted_params(fitter: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in fitter.params_.items()}

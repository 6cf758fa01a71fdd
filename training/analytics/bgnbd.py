"""BG/NBD's conditional expectation where lifetimes' closed form is undefined.

lifetimes computes E[Y(t) | x, tx, T] with a Gauss hypergeometric function whose third
parameter is a + b + x - 1; when a + b < 1 (a penalized fit can land there) that is <= 0 for
customers without a repeat purchase and the formula gives NaN, although the expectation itself
is finite. Here it is the integral it stands for (Fader, Hardie and Lee 2005): a customer alive
at T has rate lambda ~ Gamma(r + x, alpha + T) and dropout p ~ Beta(a, b + x), independent, and
buys (1 - exp(-lambda p t)) / p in the next t, so

    E[Y(t) | alive] = E_p[(1 - ((alpha + T) / (alpha + T + p t))^(r + x)) / p],

a smooth integrand against the Beta weight, done by Gauss-Jacobi quadrature; the caller
multiplies by P(alive | x, tx, T), which lifetimes computes without trouble.
"""

from __future__ import annotations

import numpy as np
from scipy.special import roots_jacobi

from training.analytics.fitting import F64, I64

NODES = 64  # the integrand's nearest singularity is outside [0, 1]: 64 nodes reach ~1e-12
MIN_SHAPE = 1e-6  # Beta shapes below this (the weight's exponents near -1) have no usable rule


def expected_if_alive(params: dict[str, float], x: I64, big_t: F64, t: float) -> F64:
    """E[purchases in (T, T + t] | x, T, alive at T] for each customer, by quadrature over p.
    Times P(alive) (lifetimes' is defined where its expectation is not) it is the expectation."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    out = np.zeros(len(x), dtype=np.float64)
    for k in np.unique(x).tolist():
        rows = np.flatnonzero(x == k)
        if min(a, b + k) < MIN_SHAPE:
            out[rows] = np.nan  # a degenerate fit (a shape at 0): no quadrature rule, undefined
            continue
        # roots_jacobi's weight (1 - u)^beta' (1 + u)^alpha' on [-1, 1] with p = (1 + u) / 2
        # is p^(a - 1) (1 - p)^(b + k - 1) up to a constant, which the normalisation removes.
        u, w = roots_jacobi(NODES, b + k - 1, a - 1)
        p = (1.0 + u) / 2.0
        base = (alpha + big_t[rows])[:, None]
        g = -np.expm1((r + k) * np.log(base / (base + p[None, :] * t))) / p[None, :]
        out[rows] = (g @ w) / w.sum()
    return out

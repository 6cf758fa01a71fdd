"""Personas: shared taste centres and category mixes, the structure collaborative filtering
finds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.synth.arrays import F32, F64, normalized_cdf
from training.synth.catalog import DIM, Catalog


@dataclass(frozen=True)
class Personas:
    cdf: F64  # persona share CDF
    centers: F32  # (n_personas, DIM)
    cat_cdf_flat: F64  # row p holds p + CDF over categories for persona p


def make_personas(cat: Catalog, rng: np.random.Generator) -> Personas:
    k = cat.n_categories
    n = min(max(k // 2, 4), 64)
    share = rng.lognormal(0.0, 0.7, n)
    # Sparse category mixes (small gamma shape) leaning on popular categories; 20% global mix
    # keeps every category reachable.
    mix = rng.gamma(0.3, 1.0, (n, k)) * cat.cat_pop**0.5
    mix = 0.8 * mix / mix.sum(axis=1, keepdims=True) + 0.2 * cat.cat_pop
    cdf = np.cumsum(mix, axis=1)
    cdf /= cdf[:, -1:]
    cdf[:, -1] = 1.0
    return Personas(
        cdf=normalized_cdf(share),
        centers=rng.standard_normal((n, DIM), dtype=np.float32),
        cat_cdf_flat=np.asarray(cdf + np.arange(n)[:, None], dtype=np.float64).ravel(),
    )

"""`recsvc audience`: the customers most likely to want one product, from one bundle.

A customer's affinity is the inner product of their vector and the product's, the score
RecommendProducts ranks by. Customers who already had the product in training are left out
(unless its category is a repeat-purchase one, or ``include_purchased``), as the server
leaves it out of their recommendations; so are customers without any signal (zero vector).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from formats.errors import NotFound
from recsvc.engine import Engine


def audience(
    engine: Engine, product_id: str, top: int, include_purchased: bool = False
) -> pl.DataFrame:
    """customer_id, rank (1 = most likely), score: at most ``top`` rows."""
    cat = engine.catalog
    idx = cat.product_index.get(product_id)
    if idx is None:
        raise NotFound(f"product {product_id!r} is not in the catalog of model {engine.version}")
    users = engine.user_factors
    scores = users @ cat.vectors(idx)
    eligible = np.any(users != 0, axis=1)
    if not include_purchased and not cat.repeat_category[cat.category[idx]]:
        m = engine.user_items
        had = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))[m.indices == idx]
        eligible[had] = False
    candidates = np.flatnonzero(eligible)
    n = min(top, len(candidates))
    if n == 0:
        best = candidates[:0]
    else:
        part = candidates[np.argpartition(-scores[candidates], n - 1)[:n]]
        best = part[np.argsort(-scores[part], kind="stable")]
    ids = engine.bundle.customer_ids
    return pl.DataFrame(
        {
            "customer_id": ids.gather(best) if len(best) else ids.head(0),
            "rank": np.arange(1, len(best) + 1, dtype=np.int32),
            "score": scores[best].astype(np.float32),
        }
    )

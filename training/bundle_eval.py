"""`recsvc evaluate`: score a published bundle on a file of held-out interactions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from formats.bundle import Bundle
from training.dataset import binary_matrix
from training.ingest import OnError, read_interactions
from training.metrics import evaluate
from training.models import ItemKNNModel, PopularityModel


def evaluate_bundle(
    bundle: Bundle,
    interactions: Path,
    k: int = 20,
    target_events: tuple[str, ...] = ("purchase",),
    baselines: tuple[str, ...] = ("popularity", "itemknn"),
    on_error: OnError = "fail",
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Metrics per model, and counts of what was evaluated and what was dropped (unknown
    customers or products, products the customer already had in training)."""
    frame, _ = read_interactions(interactions, on_error)
    frame = frame.filter(pl.col("event_type").is_in(list(target_events)))
    users = pl.DataFrame({"customer_id": bundle.customer_ids}).with_row_index("u")
    items = bundle.products.select("product_id").with_row_index("i")
    joined = frame.join(users, on="customer_id", how="left").join(
        items, on="product_id", how="left"
    )
    known = joined.filter(pl.col("u").is_not_null() & pl.col("i").is_not_null())
    shape = bundle.user_items.shape
    seen = bundle.user_items.copy()
    seen.data[:] = 1.0
    targets = binary_matrix(known["u"].to_numpy(), known["i"].to_numpy(), shape)
    fresh = targets - targets.multiply(seen)
    fresh.eliminate_zeros()
    counts = {
        "rows": frame.height,
        "unknown_customer_or_product": joined.height - known.height,
        "already_seen": int(targets.nnz - fresh.nnz),
        "customers_evaluated": int((np.diff(fresh.indptr) > 0).sum()),
    }
    uf, itf = bundle.user_factors, bundle.item_factors
    results = {"als": evaluate(lambda u: uf[u] @ itf.T, seen, fresh, k)}
    if "popularity" in baselines:
        pop = PopularityModel()
        pop.item_scores = bundle.products["popularity"].to_numpy().astype(np.float32)
        results["popularity"] = evaluate(lambda u: pop.score(u, seen), seen, fresh, k)
    if "itemknn" in baselines:
        knn = ItemKNNModel()
        knn.fit(bundle.user_items)
        results["itemknn"] = evaluate(lambda u: knn.score(u, bundle.user_items), seen, fresh, k)
    return results, counts

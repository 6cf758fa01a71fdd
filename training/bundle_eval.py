"""`recsvc evaluate`: score a published bundle on a file of held-out interactions.

The bundle is scored as the server answers from it: the model its manifest serves (ALS, the
item-to-item model or their blend), customers' item-to-item queries built from the bundle's
``sequence`` extra by the function serving uses (formats.history.query_matrix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from formats.bundle import Bundle
from formats.history import SEQUENCE, query_matrix
from formats.weights import WeightConfig
from training.dataset import binary_matrix
from training.ingest import OnError, read_interactions
from training.item2item import Item2ItemModel, Item2ItemParams
from training.metrics import Scorer, evaluate
from training.models import ItemKNNModel, PopularityModel


def served_model(manifest: dict[str, Any]) -> str:
    """What RecommendProducts serves from a bundle: "als", "item2item" or "blend"."""
    return str(manifest.get("serving", {}).get("recommend", "als"))


def item2item_of(bundle: Bundle) -> tuple[Item2ItemModel, csr_matrix, float] | None:
    """The bundle's item-to-item model, every customer's query and the blend weight."""
    if "item2item" not in bundle.extras or SEQUENCE not in bundle.extras:
        return None
    params = dict(bundle.manifest["params"]["item2item"])
    beta = float(params.pop("blend_beta", 0.0))
    params.pop("kind", None)
    p = Item2ItemParams(**params)
    arrays = bundle.extras["item2item"]
    n = bundle.item_factors.shape[0]
    model = Item2ItemModel(p)
    model.neighbours = csr_matrix(
        (arrays["data"], arrays["indices"], arrays["indptr"]), shape=(n, n)
    )
    model.popularity = bundle.products["popularity"].to_numpy().astype(np.float32)
    weights = WeightConfig.from_dict(bundle.manifest["params"]["weights"])
    seq = bundle.extras[SEQUENCE]
    m = bundle.user_items
    raw = csr_matrix((seq["raw"], m.indices, m.indptr), shape=m.shape)
    query = query_matrix(raw, seq["rank"], seq["events"], p.decay, p.recent, weights.confidence)
    return model, query, beta


def bundle_scorers(bundle: Bundle) -> tuple[dict[str, Scorer], str]:
    """The servable models of a bundle by name, and the name of the one served."""
    uf, itf = bundle.user_factors, bundle.item_factors

    def als(u: np.ndarray) -> np.ndarray:
        scores: np.ndarray = uf[u] @ itf.T
        return scores

    scorers: dict[str, Scorer] = {"als": als}
    i2i = item2item_of(bundle)
    if i2i is not None:
        model, query, beta = i2i

        def item2item(u: np.ndarray) -> np.ndarray:
            return model.score(u, query)

        def blend(u: np.ndarray) -> np.ndarray:
            scores: np.ndarray = als(u) + beta * model.raw_scores(u, query)
            return scores

        scorers["item2item"] = item2item
        if beta > 0:
            scorers["blend"] = blend
    served = served_model(bundle.manifest)
    return scorers, served if served in scorers else "als"


def evaluate_bundle(
    bundle: Bundle,
    interactions: Path,
    k: int = 20,
    target_events: tuple[str, ...] = ("purchase",),
    baselines: tuple[str, ...] = ("popularity", "itemknn"),
    on_error: OnError = "fail",
) -> tuple[dict[str, dict[str, float]], dict[str, int], str]:
    """Metrics per model, counts of what was evaluated and what was dropped (unknown
    customers or products, products the customer already had in training), and the name of
    the served model."""
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
    scorers, served = bundle_scorers(bundle)
    results = {name: evaluate(s, seen, fresh, k) for name, s in scorers.items()}
    if "popularity" in baselines:
        pop = PopularityModel()
        pop.item_scores = bundle.products["popularity"].to_numpy().astype(np.float32)
        results["popularity"] = evaluate(lambda u: pop.score(u, seen), seen, fresh, k)
    if "itemknn" in baselines:
        knn = ItemKNNModel()
        knn.fit(bundle.user_items)
        results["itemknn"] = evaluate(lambda u: knn.score(u, bundle.user_items), seen, fresh, k)
    return results, counts, served

"""`recsvc evaluate` and `recsvc models compare`: score published bundles on a file of held-out
interactions.

A bundle is scored as the server answers from it: the model its manifest serves (ALS, the
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

Metrics = dict[str, dict[str, float]]


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


def _targets(bundle: Bundle, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the bundle's customer and product indexes (u, i; null when unknown)
    and whether the bundle saw that pair in training."""
    users = pl.DataFrame({"customer_id": bundle.customer_ids}).with_row_index("u")
    items = bundle.products.select("product_id").with_row_index("i")
    joined = frame.join(users, on="customer_id", how="left", maintain_order="left").join(
        items, on="product_id", how="left", maintain_order="left"
    )
    known = (joined["u"].is_not_null() & joined["i"].is_not_null()).to_numpy()
    u = joined["u"].fill_null(0).to_numpy().astype(np.int64)
    i = joined["i"].fill_null(0).to_numpy().astype(np.int64)
    seen = np.asarray(bundle.user_items[u, i]).ravel() != 0 if len(u) else np.zeros(0, bool)
    return joined.with_columns(pl.Series("known", known), pl.Series("seen", seen & known))


def _score(
    bundle: Bundle, rows: pl.DataFrame, k: int, baselines: tuple[str, ...]
) -> tuple[Metrics, int, str]:
    """Metrics of the bundle's servable models (and baselines) on ``rows`` (known, unseen
    pairs), the number of customers scored and the name of the served model."""
    shape = bundle.user_items.shape
    seen = bundle.user_items.copy()
    seen.data[:] = 1.0
    fresh = binary_matrix(rows["u"].to_numpy(), rows["i"].to_numpy(), shape)
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
    return results, int((np.diff(fresh.indptr) > 0).sum()), served


def _read_targets(
    interactions: Path, target_events: tuple[str, ...], on_error: OnError
) -> pl.DataFrame:
    frame, _ = read_interactions(interactions, on_error)
    return frame.filter(pl.col("event_type").is_in(list(target_events))).select(
        "customer_id", "product_id"
    )


def evaluate_bundle(
    bundle: Bundle,
    interactions: Path,
    k: int = 20,
    target_events: tuple[str, ...] = ("purchase",),
    baselines: tuple[str, ...] = ("popularity", "itemknn"),
    on_error: OnError = "fail",
) -> tuple[Metrics, dict[str, int], str]:
    """Metrics per model, counts of what was evaluated and what was dropped (unknown
    customers or products, products the customer already had in training), and the name of
    the served model."""
    frame = _targets(bundle, _read_targets(interactions, target_events, on_error))
    known = frame.filter(pl.col("known"))
    fresh = known.filter(~pl.col("seen")).unique(["u", "i"])
    results, evaluated, served = _score(bundle, fresh, k, baselines)
    already = known.filter(pl.col("seen")).unique(["u", "i"]).height
    counts = {
        "rows": frame.height,
        "unknown_customer_or_product": frame.height - known.height,
        "already_seen": already,
        "customers_evaluated": evaluated,
    }
    return results, counts, served


def compare_bundles(
    a: Bundle,
    b: Bundle,
    interactions: Path,
    k: int = 20,
    target_events: tuple[str, ...] = ("purchase",),
    on_error: OnError = "fail",
) -> tuple[Metrics, Metrics, dict[str, int]]:
    """Both bundles on the same targets: held-out rows whose customer and product both know
    and that neither saw in training. Returns their metrics (each servable model, popularity,
    and "served": the model each bundle serves) and counts."""
    frame = _read_targets(interactions, target_events, on_error)
    ta, tb = _targets(a, frame), _targets(b, frame)
    usable = ta["known"] & tb["known"] & ~ta["seen"] & ~tb["seen"]
    rows_a = ta.filter(usable).unique(["u", "i"], maintain_order=True)
    rows_b = tb.filter(usable).unique(["u", "i"], maintain_order=True)
    metrics_a, customers, served_a = _score(a, rows_a, k, ("popularity",))
    metrics_b, _, served_b = _score(b, rows_b, k, ("popularity",))
    metrics_a["served"], metrics_b["served"] = metrics_a[served_a], metrics_b[served_b]
    counts = {
        "rows": frame.height,
        "compared_rows": int(usable.sum()),
        "unknown_to_either": int((~(ta["known"] & tb["known"])).sum()),
        "seen_by_either": int((ta["known"] & tb["known"] & (ta["seen"] | tb["seen"])).sum()),
        "customers_evaluated": customers,
    }
    return metrics_a, metrics_b, counts


def format_comparison(
    a: str, b: str, metrics_a: Metrics, metrics_b: Metrics, counts: dict[str, int]
) -> str:
    """Both bundles side by side, with B's change relative to A."""
    width = max(len(a), len(b), 10)
    lines = [
        f"{counts['customers_evaluated']:,} customers, {counts['compared_rows']:,} of "
        f"{counts['rows']:,} held-out rows ({counts['unknown_to_either']:,} name a customer or "
        f"product one bundle lacks, {counts['seen_by_either']:,} were seen in training by one)",
        f"{'metric':<14}  {a:>{width}}  {b:>{width}}  {'change':>8}",
    ]
    for name, value_a in metrics_a["served"].items():  # what each bundle serves
        value_b = metrics_b["served"][name]
        change = f"{value_b / value_a - 1:+.1%}" if value_a > 0 else "n/a"
        lines.append(f"{name:<14}  {value_a:>{width}.4f}  {value_b:>{width}.4f}  {change:>8}")
    for name, value_a in metrics_a.get("popularity", {}).items():
        if name.startswith("ndcg"):
            value_b = metrics_b["popularity"][name]
            label = f"popularity {name}"
            lines.append(f"{label:<14}  {value_a:>{width}.4f}  {value_b:>{width}.4f}")
    return "\n".join(lines)

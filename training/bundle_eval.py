"""`recsvc evaluate` and `recsvc models compare`: score published bundles on a file of held-out
interactions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from formats.bundle import Bundle
from training.dataset import binary_matrix
from training.ingest import OnError, read_interactions
from training.metrics import evaluate
from training.models import ItemKNNModel, PopularityModel

Metrics = dict[str, dict[str, float]]


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
) -> tuple[Metrics, int]:
    """Metrics of the bundle's ALS (and baselines) on ``rows`` (known, unseen pairs)."""
    shape = bundle.user_items.shape
    seen = bundle.user_items.copy()
    seen.data[:] = 1.0
    fresh = binary_matrix(rows["u"].to_numpy(), rows["i"].to_numpy(), shape)
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
    return results, int((np.diff(fresh.indptr) > 0).sum())


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
) -> tuple[Metrics, dict[str, int]]:
    """Metrics per model, and counts of what was evaluated and what was dropped (unknown
    customers or products, products the customer already had in training)."""
    frame = _targets(bundle, _read_targets(interactions, target_events, on_error))
    known = frame.filter(pl.col("known"))
    fresh = known.filter(~pl.col("seen")).unique(["u", "i"])
    results, evaluated = _score(bundle, fresh, k, baselines)
    already = known.filter(pl.col("seen")).unique(["u", "i"]).height
    counts = {
        "rows": frame.height,
        "unknown_customer_or_product": frame.height - known.height,
        "already_seen": already,
        "customers_evaluated": evaluated,
    }
    return results, counts


def compare_bundles(
    a: Bundle,
    b: Bundle,
    interactions: Path,
    k: int = 20,
    target_events: tuple[str, ...] = ("purchase",),
    on_error: OnError = "fail",
) -> tuple[Metrics, Metrics, dict[str, int]]:
    """Both bundles on the same targets: held-out rows whose customer and product both know
    and that neither saw in training. Returns their metrics (ALS and popularity) and counts."""
    frame = _read_targets(interactions, target_events, on_error)
    ta, tb = _targets(a, frame), _targets(b, frame)
    usable = ta["known"] & tb["known"] & ~ta["seen"] & ~tb["seen"]
    rows_a = ta.filter(usable).unique(["u", "i"], maintain_order=True)
    rows_b = tb.filter(usable).unique(["u", "i"], maintain_order=True)
    metrics_a, customers = _score(a, rows_a, k, ("popularity",))
    metrics_b, _ = _score(b, rows_b, k, ("popularity",))
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
    for name, value_a in metrics_a["als"].items():
        value_b = metrics_b["als"][name]
        change = f"{value_b / value_a - 1:+.1%}" if value_a > 0 else "n/a"
        lines.append(f"{name:<14}  {value_a:>{width}.4f}  {value_b:>{width}.4f}  {change:>8}")
    for name, value_a in metrics_a.get("popularity", {}).items():
        if name.startswith("ndcg"):
            value_b = metrics_b["popularity"][name]
            label = f"popularity {name}"
            lines.append(f"{label:<14}  {value_a:>{width}.4f}  {value_b:>{width}.4f}")
    return "\n".join(lines)

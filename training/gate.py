"""The publish gate: a new model worse than the one serving is written but not made CURRENT.

Before `recsvc train` publishes, it compares the new model's held-out NDCG@k with the serving
model's on the same split, and shows popularity on it for scale:

- **Same inputs, same evaluation settings** (input fingerprint, split, fraction, seed, k,
  targets, customers evaluated): the serving bundle's recorded figure was measured on this
  very split when it was trained, so it is used as is.
- **Otherwise** the serving bundle is scored on this split: customer vectors are solved from
  the training part against its item vectors (one ALS user step with its own weights,
  regularization and alpha, i.e. what fold-in serves), products it does not know cannot be
  recommended by it, and the targets are only the held-out interactions *later than its
  training data*, which it never saw. The new model and popularity are scored on the same
  targets. (This path scores the serving bundle's ALS even when it serves its item-to-item
  model: the recorded path above compares the models each bundle serves.)

The gate says why when it cannot compare (no model serving, an unreadable bundle, fewer than
half the target products in its catalog, too few customers with later held-out interactions);
then nothing blocks the publish.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from formats import bundle as bundles
from formats.weights import WeightConfig
from training.dataset import Dataset, binary_matrix, user_item_matrix
from training.metrics import Scorer, evaluate
from training.split import Split

log = logging.getLogger(__name__)
SETTINGS = ("split", "test_fraction", "seed", "k", "target_events", "customers_evaluated")


@dataclass(frozen=True)
class GateConfig:
    tolerance: float = 0.02  # refuse a model more than this much worse, relative NDCG@k
    force: bool = False  # publish whatever the comparison says
    min_customers: int = 100  # fewer customers with comparable targets: no verdict


@dataclass(frozen=True)
class GateResult:
    metric: str  # e.g. "ndcg@20"
    new: float
    serving_version: str | None = None
    serving: float | None = None  # None: no comparison (basis says why)
    popularity: float | None = None
    basis: str = ""  # how the serving figure was obtained, or why there is none
    customers: int = 0
    tolerance: float = 0.02

    @property
    def compared(self) -> bool:
        return self.serving is not None

    @property
    def change(self) -> float | None:
        """Relative change of the new model against the serving one (-0.1 = 10% worse)."""
        if self.serving is None or self.serving <= 0:
            return None
        return self.new / self.serving - 1.0

    @property
    def passed(self) -> bool:
        return self.serving is None or self.new >= self.serving * (1.0 - self.tolerance)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def figures(self) -> str:
        """'ndcg@20 0.1234 (new) vs 0.1300 (serving model V), -5.1%; popularity 0.0500'."""
        if self.serving is None:
            return f"{self.metric} {self.new:.4f}"
        change = f", {self.change:+.1%}" if self.change is not None else ""
        pop = f"; popularity {self.popularity:.4f}" if self.popularity is not None else ""
        return (
            f"{self.metric} {self.new:.4f} (new) vs {self.serving:.4f} (serving model "
            f"{self.serving_version}){change}{pop}"
        )

    def summary(self) -> str:
        if self.serving is None:
            return f"publish gate: no comparison ({self.basis})"
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"publish gate {verdict}: {self.figures()} ({self.basis}; tolerance "
            f"{self.tolerance:.0%})"
        )


def compare_with_serving(
    model_dir: Path,
    evaluation: dict[str, Any],
    fingerprint: str,
    metrics: dict[str, dict[str, float]],
    ds: Dataset,
    split: Split,
    new_scorer: Scorer,
    users: np.ndarray,
    cfg: GateConfig,
    model: str = "als",
) -> GateResult:
    """The gate's verdict for a bundle serving ``model``, evaluated as ``metrics`` on
    ``split`` (``evaluation`` holds its settings as the manifest records them;
    ``new_scorer`` scores its customers with that model)."""
    k = int(evaluation["k"])
    metric = f"ndcg@{k}"
    result = GateResult(metric, metrics[model][metric], tolerance=cfg.tolerance)
    version = bundles.current_version(model_dir)
    if version is None:
        return _no(result, "no model is serving yet")
    try:
        manifest = bundles.read_manifest(bundles.resolve(model_dir, version))
    except bundles.BundleError as exc:
        return _no(result, f"the serving bundle cannot be read: {exc}", version)
    recorded = manifest.get("evaluation", {})
    same = manifest.get("input", {}).get("fingerprint") == fingerprint and all(
        _same(recorded.get(key), evaluation.get(key)) for key in SETTINGS
    )
    # What that bundle served, as recorded (older manifests: ALS).
    served_model = str(manifest.get("model", "als"))
    served = recorded.get("models", {}).get(served_model, {}).get(metric)
    if same and served is not None:
        pop = recorded.get("models", {}).get("popularity", {}).get(metric)
        return GateResult(
            metric,
            result.new,
            version,
            float(served),
            metrics.get("popularity", {}).get(metric, pop),
            "recorded when it was trained, on this same split of the same input files",
            int(evaluation["customers_evaluated"]),
            cfg.tolerance,
        )
    try:
        bundle = bundles.load_bundle(bundles.resolve(model_dir, version))
    except bundles.BundleError as exc:
        return _no(result, f"the serving bundle cannot be loaded: {exc}", version)
    return _score_serving(result, bundle, ds, split, new_scorer, users, k, cfg)


def _no(result: GateResult, why: str, version: str | None = None) -> GateResult:
    return GateResult(
        result.metric, result.new, version, None, None, why, tolerance=result.tolerance
    )


def _same(a: object, b: object) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    return a == b


def _score_serving(
    result: GateResult,
    bundle: bundles.Bundle,
    ds: Dataset,
    split: Split,
    new_scorer: Scorer,
    users: np.ndarray,
    k: int,
    cfg: GateConfig,
) -> GateResult:
    version = bundle.version
    cutoff_s = int(bundle.manifest.get("data", {}).get("last_event_ms", 0)) // 1000
    later = split.test.subset(split.test.ts > cutoff_s)
    shape = (ds.n_users, ds.n_items)
    seen = binary_matrix(split.train.user, split.train.item, shape)
    targets = binary_matrix(later.user, later.item, shape)
    targets = csr_matrix(targets - targets.multiply(seen))
    targets.eliminate_zeros()
    chosen = users[np.diff(targets.indptr)[users] > 0]
    if len(chosen) < cfg.min_customers:
        return _no(
            result,
            f"{len(chosen)} evaluated customers have held-out interactions later than the "
            f"serving model's data (at least {cfg.min_customers} are needed for a fair "
            "comparison)",
            version,
        )
    # New product index -> the serving model's product index (-1: it does not know it).
    known = pl.DataFrame({"product_id": bundle.products["product_id"]}).with_row_index("s")
    mapped = (
        ds.catalog.select("product_id")
        .join(known, on="product_id", how="left", maintain_order="left")["s"]
        .fill_null(-1)
        .to_numpy()
        .astype(np.int64)
    )
    target_items = targets[chosen].indices
    share = float((mapped[target_items] >= 0).mean()) if len(target_items) else 0.0
    if share < 0.5:
        return _no(
            result,
            f"only {share:.0%} of the held-out target products are in the serving model's catalog",
            version,
        )
    serving_scorer = _serving_scorer(bundle, split.train, mapped, chosen)
    popularity = np.bincount(seen.indices, minlength=ds.n_items).astype(np.float32)
    metric = result.metric
    return GateResult(
        metric,
        evaluate(new_scorer, seen, targets, k, chosen)[metric],
        version,
        evaluate(serving_scorer, seen, targets, k, chosen)[metric],
        evaluate(lambda u: np.tile(popularity, (len(u), 1)), seen, targets, k, chosen)[metric],
        f"{len(chosen):,} customers' held-out interactions later than its training data, "
        "its vectors solved from the training part",
        len(chosen),
        cfg.tolerance,
    )


def _serving_scorer(
    bundle: bundles.Bundle, train: Dataset, mapped: np.ndarray, users: np.ndarray
) -> Scorer:
    """Scores of the serving model in the new product order, for ``users`` (new indexes):
    one ALS user step over their training-part history, weighted as it was trained."""
    from implicit.cpu.als import AlternatingLeastSquares

    params = bundle.manifest.get("params", {})
    als = params.get("als", {})
    weights = WeightConfig(**params.get("weights", {}))
    history = user_item_matrix(train, weights)[users].tocoo()
    keep = mapped[history.col] >= 0
    rows = csr_matrix(
        (history.data[keep], (history.row[keep], mapped[history.col[keep]])),
        shape=(len(users), bundle.item_factors.shape[0]),
        dtype=np.float32,
    )
    items = np.ascontiguousarray(bundle.item_factors, dtype=np.float32)
    with threadpool_limits(1, "blas"):
        solver = AlternatingLeastSquares(
            factors=items.shape[1],
            regularization=float(als.get("regularization", 10.0)),
            alpha=float(als.get("alpha", 1.0)),
            random_state=0,
        )
        solver.item_factors = items
        vectors = solver.recalculate_user(np.arange(len(users)), rows)
    row_of = {int(u): r for r, u in enumerate(users.tolist())}
    known = np.flatnonzero(mapped >= 0)

    def scorer(u: np.ndarray) -> np.ndarray:
        scores = np.full((len(u), len(mapped)), -np.inf, dtype=np.float32)
        picked = vectors[[row_of[int(x)] for x in u]]
        scores[:, known] = (picked @ items[mapped[known]].T).astype(np.float32)
        return scores

    return scorer

"""The options of one `recsvc train` run: what the pipeline and the tuner both read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from formats.weights import WeightConfig
from training.cold_start import ColdStartConfig
from training.content import ContentConfig
from training.gate import GateConfig
from training.index import IndexConfig
from training.ingest import OnError
from training.item2item import Item2ItemParams
from training.item2vec import Item2VecParams
from training.models import ALSParams
from training.split import SplitKind


@dataclass(frozen=True)
class TrainConfig:
    split: SplitKind = "temporal"
    test_fraction: float = 0.2
    seed: int = 0
    k: int = 20
    target_events: tuple[str, ...] = ("purchase",)
    weights: WeightConfig = field(default_factory=WeightConfig)
    als: ALSParams = field(default_factory=ALSParams)
    # The item-to-item model, evaluated beside ALS; the better (or their blend) serves.
    item2item: Item2ItemParams = field(default_factory=Item2ItemParams)
    use_item2item: bool = True
    # What RecommendProducts serves: "auto" = the servable model with the best held-out ndcg.
    serve: Literal["auto", "als", "item2item", "blend"] = "auto"
    # The embedding model, evaluated on similar products and sessions (served where it wins).
    item2vec: Item2VecParams = field(default_factory=Item2VecParams)
    use_item2vec: bool = True
    serve_similar: Literal["auto", "als", "item2item", "item2vec"] = "auto"  # SimilarProducts
    # RecommendProducts for a customer without history, from context.session_product_ids.
    serve_session: Literal["auto", "als", "item2item", "item2vec"] = "auto"
    tune: bool = False
    tune_trials: int = 0  # 0 = the full default search space
    baselines: tuple[str, ...] = ("popularity", "itemknn")
    eval_users: int = 10_000  # evaluate on a sample of at most this many customers
    refit: bool = True
    refit_iterations: int = 3  # warm-started from the evaluated model's item vectors
    index: IndexConfig = field(default_factory=IndexConfig)
    on_error: OnError = "fail"
    progress: bool = True
    # Customers to leave out entirely: ForgetCustomer tombstones (the CLI reads them from the
    # feature store). Customers whose customers-file row says consent_personalization=false
    # are left out as well.
    forget: frozenset[str] = frozenset()
    # The lifetime-value model's calibration/holdout check (recsvc analytics), reported with
    # the evaluation: fit on the first half of the purchase history, forecast the second.
    clv_check: bool = True
    # The content model (catalog attributes -> item vectors) that gives products without
    # interactions their vectors, and its held-out check (products hidden from a refit).
    content: ContentConfig = field(default_factory=ContentConfig)
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)
    # Before publishing: compare with the serving model on the same held-out split; more
    # than ``gate.tolerance`` worse (relative NDCG@k) is written but not published.
    gate: GateConfig = field(default_factory=GateConfig)

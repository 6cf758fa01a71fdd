"""Spark MLlib's implicit ALS behind the trainer's model interface.

The confidence matrix is built on the driver by the shared weighting code
(training.dataset.user_item_matrix, formats.weights), so Spark learns from exactly the entries
implicit would. It goes to Spark as an Arrow table of (customer, product, confidence); Spark
partitions it into blocks and fits on its executors; the factors come back to the driver,
where evaluation, the FAISS index and the bundle need them.

Two differences from implicit, both in Spark's loss: confidence is ``1 + alpha * value``
(implicit: ``alpha * value``), and the regularization of each vector is scaled by its number
of entries (ALS-WR), so good values of ``regularization`` are ~50-100x smaller than implicit's
and the tuner searches another range (see SPACE).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.sparse import csr_matrix

from formats.weights import WeightConfig
from training.engines import ALSEngine
from training.models import ALSModel, ALSParams
from training.tune import Space

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

# On MovieLens-100k (random split) regularization 0.3 and alpha 3 reached ndcg@20 0.443 with
# no count damping, against 0.421 at 0.1 (alpha 1) and 0.351 at 1.0 (BENCHMARKS.md, "Spark"):
# ALS-WR already scales the regularization per vector, which the damping stands in for.
DEFAULTS = ALSParams(factors=128, regularization=0.3, alpha=3.0, iterations=15)
WEIGHTS = WeightConfig(user_exponent=0.0, item_exponent=0.0)
SPACE = Space(regularization=(0.02, 2.0), alpha=(1.0, 50.0))
TUNE_TRIALS = 12  # each fit is a Spark job: fewer than implicit's 36


class SparkALSModel(ALSModel):
    """``ALSModel`` whose fit runs on Spark; scoring is the same dot product on the driver.

    ``blocks``: how many user and item blocks Spark splits the matrix into (0: the session's
    default parallelism, one per executor core). MLlib cannot start from given item vectors,
    so ``warm_start`` is refused: a refit is a full fit.
    """

    name = "als"

    def __init__(self, params: ALSParams, session: SparkSession, blocks: int = 0) -> None:
        super().__init__(params)
        self.session = session
        self.blocks = blocks or session.sparkContext.defaultParallelism

    def fit(
        self,
        user_items: csr_matrix,
        progress: bool = False,
        warm_start: ALSModel | None = None,
        iterations: int | None = None,
    ) -> None:
        from pyspark.ml.recommendation import ALS

        if warm_start is not None:
            raise ValueError("Spark's ALS cannot start from given vectors; refit from scratch")
        p = self.params
        ratings = self.session.createDataFrame(as_arrow(user_items))
        als = ALS(
            rank=p.factors,
            maxIter=iterations or p.iterations,
            regParam=p.regularization,
            alpha=p.alpha,
            implicitPrefs=True,
            seed=p.random_state,
            numUserBlocks=self.blocks,
            numItemBlocks=self.blocks,
            userCol="user",
            itemCol="item",
            ratingCol="confidence",
        )
        model = als.fit(ratings)
        n_users, n_items = user_items.shape
        try:
            self.user_factors = collect_factors(model.userFactors, n_users, p.factors)
            self.item_factors = collect_factors(model.itemFactors, n_items, p.factors)
        finally:  # ALS caches the factors on the executors; free them for the next fit
            model.userFactors.unpersist()
            model.itemFactors.unpersist()


def as_arrow(m: csr_matrix) -> Any:
    """The matrix's entries as an Arrow table (user int32, item int32, confidence float32)."""
    import pyarrow as pa

    coo = m.tocoo()
    return pa.table(
        {
            "user": coo.row.astype(np.int32),
            "item": coo.col.astype(np.int32),
            "confidence": coo.data.astype(np.float32),
        }
    )


def collect_factors(frame: DataFrame, rows: int, rank: int) -> np.ndarray:
    """MLlib's (id, features) rows as a dense float32 array; ids it never saw (a customer or
    product without entries) keep zero vectors, as implicit gives them."""
    table = frame.toArrow()
    out = np.zeros((rows, rank), dtype=np.float32)
    if table.num_rows:
        ids = table.column("id").to_numpy()
        values = table.column("features").combine_chunks().flatten().to_numpy()
        out[ids] = values.reshape(len(ids), rank)
    return out


def spark_engine(session: SparkSession, blocks: int = 0) -> ALSEngine:
    """The Spark engine for training.train.run on a started session."""
    blocks = blocks or session.sparkContext.defaultParallelism

    def new_model(params: ALSParams) -> ALSModel:
        return SparkALSModel(params, session, blocks)

    return ALSEngine(
        name="spark",
        new_model=new_model,
        defaults=DEFAULTS,
        weights=WEIGHTS,
        space=SPACE,
        tune_trials=TUNE_TRIALS,
        warm_starts=False,
        info={
            "library": "pyspark.ml.recommendation.ALS",
            "version": session.version,
            "master": session.sparkContext.master,
            "blocks": blocks,
            "default_parallelism": session.sparkContext.defaultParallelism,
        },
    )

"""Real-time customer vectors: the trained history plus recent events, solved against the
served item vectors exactly as one ALS user step (``implicit``'s ``recalculate_user``).

The whole history is weighted as training weighted it (event weights, confidence transform,
count damping and sequence decay from the bundle's manifest): new events take the latest
positions of the customer's history, so their products weigh most and the trained ones slide
back, and a folded-in vector is what the next training run would give this customer if the
item vectors did not move. The bm25 transform needs the whole matrix: trained entries of bm25
models keep their trained confidence (rescaled for the new positions and product count) and
new raw weight adds with the log transform; so do bundles without the ``sequence`` extra.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from formats.history import History, history_confidence, item_weights
from formats.weights import WeightConfig


class FoldIn:
    def __init__(
        self,
        manifest: dict[str, Any],
        grouped_factors: np.ndarray,
        position: np.ndarray,
        user_items: csr_matrix,
    ) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        params = manifest.get("params", {})
        als = params.get("als", {})
        self.weights = WeightConfig.from_dict(params.get("weights", {}))
        self.position = position
        with threadpool_limits(1, "blas"):
            self.solver = AlternatingLeastSquares(
                factors=grouped_factors.shape[1],
                regularization=float(als.get("regularization", 10.0)),
                alpha=float(als.get("alpha", 1.0)),
                num_threads=1,
                random_state=0,
            )
        # The solver works in the engine's category-grouped item order; a user vector does
        # not depend on the order of the items, so no product-order copy is needed.
        self.solver.item_factors = grouped_factors
        self.solver.YtY  # noqa: B018  computed once here, not on the first request
        self.item_weight, self.mean_user = item_weights(user_items, self.weights)

    def confidence(self, history: History) -> np.ndarray:
        """The confidence of each product of ``history``, as training would compute it."""
        return history_confidence(history, self.weights, self.item_weight, self.mean_user)

    def vector(self, history: History) -> np.ndarray:
        """The customer's vector given their whole history (trained and new events)."""
        conf = self.confidence(history)
        row = csr_matrix(
            (conf, (np.zeros(len(conf), np.int64), self.position[history.items])),
            shape=(1, len(self.position)),
        )
        row.sum_duplicates()
        result: np.ndarray = self.solver.recalculate_user(0, row)
        return result

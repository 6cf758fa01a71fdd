"""Real-time customer vectors: the trained history plus recent events, solved against the
served item vectors exactly as one ALS user step (``implicit``'s ``recalculate_user``).

Recent events are weighted as training weighted them (event weights, confidence transform,
count damping from the bundle's manifest), so a folded-in vector is what the next training
run would give this customer if the item vectors did not move. The bm25 transform needs the
whole matrix, so recent events of bm25 models use the log transform.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from formats.weights import WeightConfig, confidence_values, count_weights


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
        self.weights = WeightConfig(**params.get("weights", {}))
        self.position = position
        # last training event (ms): later real-time events are new; earlier ones are in the model
        self.cutoff_ms = int(manifest.get("data", {}).get("last_event_ms", 0))
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
        self.item_weight = count_weights(
            np.bincount(user_items.indices, minlength=user_items.shape[1]),
            self.weights.item_exponent,
        )
        per_user = np.diff(user_items.indptr)
        self.mean_user = float(per_user[per_user > 0].mean()) if per_user.any() else 1.0
        self.user_items = user_items
        self.transform = "log" if self.weights.confidence == "bm25" else self.weights.confidence

    def new_events(self, events: Iterable[tuple[int, str, float, int]]) -> dict[int, float]:
        """Summed raw weight per product of (product index, type, quantity, ts_ms) events
        newer than the training data."""
        raw: dict[int, float] = defaultdict(float)
        for idx, kind, quantity, ts_ms in events:
            if ts_ms <= self.cutoff_ms:
                continue
            # kinds are training's event types (formats.events.INTEREST maps to them)
            weight = self.weights.event_weights.get(kind, 0.0)
            if weight > 0:
                raw[idx] += weight * max(quantity, 1.0)
        return raw

    def vector(self, user: int | None, new: dict[int, float]) -> np.ndarray:
        """The customer's vector given the trained history (``user``) and new raw weights."""
        if user is not None:
            m = self.user_items
            lo, hi = m.indptr[user], m.indptr[user + 1]
            old_idx, old_conf = np.asarray(m.indices[lo:hi]), np.asarray(m.data[lo:hi])
        else:
            old_idx, old_conf = np.zeros(0, np.int32), np.zeros(0, np.float32)
        new_idx = np.fromiter(new.keys(), dtype=np.int64, count=len(new))
        raw = np.fromiter(new.values(), dtype=np.float32, count=len(new))
        n_items = len(np.union1d(old_idx, new_idx))
        user_weight = (max(n_items, 1) / self.mean_user) ** -self.weights.user_exponent
        new_conf = confidence_values(raw, self.transform) * self.item_weight[new_idx] * user_weight
        idx = np.concatenate([old_idx, new_idx]).astype(np.int64)
        conf = np.concatenate([old_conf, new_conf]).astype(np.float32)
        row = csr_matrix(
            (conf, (np.zeros(len(idx), np.int64), self.position[idx])),
            shape=(1, len(self.position)),
        )
        row.sum_duplicates()
        result: np.ndarray = self.solver.recalculate_user(0, row)
        return result

"""How interactions become confidence: the weighting that training applies to the whole
history and fold-in applies to a customer's new events, so a folded-in vector is what the
next training run would give. The manifest's ``params.weights`` is ``WeightConfig.to_dict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

import numpy as np

Confidence = Literal["binary", "log", "bm25"]
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "purchase": 1.0,
    "add_to_cart": 0.5,
    "click": 0.25,
    "view": 0.1,
}


@dataclass(frozen=True)
class WeightConfig:
    """How interactions become the confidence matrix ALS learns from."""

    event_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    half_life_days: float | None = None  # recency decay; None = no decay
    confidence: Confidence = "log"
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    # Confidence x (n_u / mean n_u)^-user_exponent x (n_i / mean n_i)^-item_exponent, where n
    # counts distinct products per customer and customers per product. Damping heavy customers
    # stands in for iALS's frequency-scaled regularization, which implicit cannot express; on
    # MovieLens-100k it lifts ALS from 0.438 to 0.449 ndcg@20 (BENCHMARKS.md).
    user_exponent: float = 0.5
    item_exponent: float = 0.3
    # Sequence-aware decay d: each (customer, product) confidence is multiplied by
    # exp(d * (r - 1)), r the position of the customer's latest interaction with the product
    # in their own history, scaled to 0 (first) .. 1 (last). The next purchase follows the
    # last ones: on MovieLens-100k's per-customer temporal protocol it lifts ndcg@20 by
    # 15-20%; on a random split it hurts, so --tune chooses it (0 stays a candidate). The
    # default is no decay, which is also what a manifest without this field means.
    sequence_decay: float = 0.0

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> WeightConfig:
        """From a manifest's ``params.weights``; fields an older manifest lacks keep their
        defaults (no sequence decay). Raises ValueError on a field this version doesn't know."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown weight settings {unknown}; is the bundle from a newer recsvc?"
            )
        return cls(**values)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return {
            "event_weights": self.event_weights,
            "half_life_days": self.half_life_days,
            "confidence": self.confidence,
            "bm25_k1": self.bm25_k1,
            "bm25_b": self.bm25_b,
            "user_exponent": self.user_exponent,
            "item_exponent": self.item_exponent,
            "sequence_decay": self.sequence_decay,
        }


def confidence_values(summed: np.ndarray, confidence: Confidence) -> np.ndarray:
    """The per-entry confidence transform of summed weights (bm25 needs the whole matrix)."""
    if confidence == "binary":
        return np.ones_like(summed, dtype=np.float32)
    if confidence == "log":
        logged: np.ndarray = np.log1p(summed).astype(np.float32)
        return logged
    raise ValueError(f"confidence {confidence!r} is not a per-entry transform")


def count_weights(counts: np.ndarray, exponent: float) -> np.ndarray:
    """(count / mean count) ^ -exponent, over the rows or columns that have any entry."""
    present = counts > 0
    mean = counts[present].mean() if present.any() else 1.0
    return np.asarray((np.maximum(counts, 1) / mean) ** -exponent, dtype=np.float32)


def sequence_factor(rank: np.ndarray, events: np.ndarray, decay: float) -> np.ndarray:
    """exp(decay * (r - 1)) per entry, r = rank / (events - 1): the position of an entry's
    latest event among its customer's ``events`` weighted events (1 when there is only one)."""
    rank = np.asarray(rank, dtype=np.float64)
    if decay == 0:
        return np.ones(len(rank), dtype=np.float32)
    events = np.asarray(events, dtype=np.float64)
    r = np.where(events > 1, rank / np.maximum(events - 1, 1), 1.0)
    return np.exp(decay * (np.clip(r, 0.0, 1.0) - 1.0)).astype(np.float32)

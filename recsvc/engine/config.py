"""Engine settings: limits of a request and how hard retrieval tries before falling back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineConfig:
    default_limit: int = 20
    max_limit: int = 200
    max_rank_ids: int = 1000
    max_per_category: int = 0  # default diversity cap; 0 = none
    repeat_categories: frozenset[str] = frozenset()  # never excluded as "already purchased"
    overfetch: int = 4  # ask the index for this many times what the request needs
    max_fetch: int = 4096  # then fall back to popularity instead of searching deeper
    direct_score_max: int = 200_000  # score a category filter's products exactly up to this
    reason_history: int = 50  # history items considered for "because you liked X"
    fold_in: bool = True  # recompute customer vectors from real-time activity
    exploration_share: float = 0.1  # of RecommendProducts slots for new products; 0 = none
    new_product_days: float = 30.0  # products introduced this recently are new

"""Which library fits ALS: the one thing `recsvc train --engine` changes in the pipeline.

Everything else (reading and validating the inputs, the weighting, the split, the metrics, the
index and the bundle) is the same code for every engine, so two engines given the same inputs
report the same counts and publish bundles that only differ in their factors. An engine says
how to build a model from ``ALSParams``, what its defaults are, where `--tune` searches, and
whether a refit can start from the evaluated model's item vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from formats.weights import WeightConfig
from training.models import ALSModel, ALSParams
from training.tune import Space


@dataclass(frozen=True)
class ALSEngine:
    name: str  # the manifest's "engine"
    new_model: Callable[[ALSParams], ALSModel]
    defaults: ALSParams = field(default_factory=ALSParams)
    weights: WeightConfig = field(default_factory=WeightConfig)
    space: Space = field(default_factory=Space)
    tune_trials: int = 36  # --tune's budget when --tune-trials is not given
    # True: the refit starts from the evaluated item vectors and runs --refit-iterations;
    # False: it is a full fit on all data.
    warm_starts: bool = True
    info: dict[str, Any] = field(default_factory=dict)  # the manifest's "engine_info"


def implicit_engine() -> ALSEngine:
    """The default: the ``implicit`` library in this process (CPU, or GPU when it has one)."""
    import implicit

    from training.models import use_gpu

    return ALSEngine(
        name="implicit",
        new_model=ALSModel,
        info={"library": "implicit", "version": implicit.__version__, "gpu": use_gpu()},
    )

"""Which arm a customer (or, for SimilarProducts, a product) is in: a stable hash of the
experiment's salt and the id, the same in every worker, replica and restart."""

from __future__ import annotations

import hashlib

from recsvc.experiments.spec import Arm, Experiment

_SCALE = 100.0 / 2**64


def bucket(salt: str, unit: str) -> float:
    """Where ``unit`` falls in [0, 100): the first 64 bits of BLAKE2b(salt, NUL, unit)."""
    digest = hashlib.blake2b(f"{salt}\0{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") * _SCALE


def assign(experiment: Experiment, unit: str) -> Arm | None:
    """The arm ``unit`` is in, or None when it falls outside the experiment's traffic (the
    arms' shares may add up to less than 100%: the rest is served as if there were none)."""
    point = bucket(experiment.salt, unit)
    edge = 0.0
    for arm in experiment.arms:
        edge += arm.traffic
        if point < edge:
            return arm
    return None

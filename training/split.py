"""Hold-out splits: temporal (the last part of each customer's history) or random."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from formats.events import INTERACTION_TYPES
from training.dataset import (
    Dataset,
    binary_matrix,
    build_dataset,
    catalog_from_interactions,
    customer_time_order,
)

SplitKind = Literal["temporal", "random"]


def by_customer_then_time(ds: Dataset) -> np.ndarray:
    """Row order sorted by customer, then timestamp (ties keep file order)."""
    return customer_time_order(ds.user, ds.ts)


def temporal_mask(ds: Dataset, test_fraction: float) -> np.ndarray:
    """True for the training rows: all but the last ``test_fraction`` of each customer's rows.

    Customers with a single interaction stay wholly in training.
    """
    order = by_customer_then_time(ds)
    users = ds.user[order]
    counts = np.bincount(users, minlength=ds.n_users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(len(users)) - starts[users]  # position within the customer's history
    # At least one held out and at least one kept for every customer with two or more rows.
    n_test = np.clip(np.rint(counts * test_fraction), 1, np.maximum(counts - 1, 1))
    n_test = np.where(counts >= 2, n_test, 0).astype(np.int64)
    is_test_sorted = rank >= counts[users] - n_test[users]
    train = np.ones(ds.n_rows, dtype=bool)
    train[order[is_test_sorted]] = False
    return train


def random_mask(ds: Dataset, test_fraction: float, seed: int) -> np.ndarray:
    perm = np.random.default_rng(seed).permutation(ds.n_rows)
    train = np.zeros(ds.n_rows, dtype=bool)
    train[perm[: round(ds.n_rows * (1.0 - test_fraction))]] = True
    return train


@dataclass(frozen=True)
class Split:
    """A training part and the held-out targets to predict from it."""

    train: Dataset
    targets: csr_matrix  # customers x products, 1 = held-out interaction to predict
    # The held-out rows behind the targets, with their times (the publish gate keeps those
    # later than the serving model's data); may include products seen in training.
    test: Dataset

    @property
    def eval_users(self) -> np.ndarray:
        return np.flatnonzero(np.diff(self.targets.indptr) > 0).astype(np.int32)


def make_split(
    ds: Dataset,
    kind: SplitKind = "temporal",
    test_fraction: float = 0.2,
    seed: int = 0,
    target_events: tuple[str, ...] = ("purchase",),
) -> Split:
    """Split, then keep as targets only what a recommender could be asked to find.

    Targets drop customers and products unseen in training and products the customer already
    had in training (those are filtered out of recommendations).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be between 0 and 1, got {test_fraction}")
    mask = (
        temporal_mask(ds, test_fraction)
        if kind == "temporal"
        else random_mask(ds, test_fraction, seed)
    )
    train = ds.subset(mask)
    test = ds.subset(~mask)
    codes = [INTERACTION_TYPES.index(e) for e in target_events]
    test = test.subset(np.isin(test.event, codes))
    seen_users = np.bincount(train.user, minlength=ds.n_users) > 0
    seen_items = np.bincount(train.item, minlength=ds.n_items) > 0
    test = test.subset(seen_users[test.user] & seen_items[test.item])
    shape = (ds.n_users, ds.n_items)
    targets = binary_matrix(test.user, test.item, shape)
    seen = binary_matrix(train.user, train.item, shape)
    targets = targets - targets.multiply(seen)  # drop already-seen products
    targets.eliminate_zeros()
    return Split(train=train, targets=csr_matrix(targets), test=test)


def sample_users(users: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` of ``users``, a deterministic sample for a seed, in index order."""
    if len(users) <= limit:
        return users
    return np.sort(np.random.default_rng(seed).choice(users, size=limit, replace=False))


def split_frame(
    interactions: pl.DataFrame, kind: SplitKind, test_fraction: float, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(training rows, held-out rows) of an interactions frame, by the very split `recsvc
    train` evaluates with: the last ``test_fraction`` of each customer's history (temporal)
    or a random share of the rows. For `recsvc data split`: train on one file, `recsvc
    evaluate` on the other."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be between 0 and 1, got {test_fraction}")
    ds, _ = build_dataset(interactions, catalog_from_interactions(interactions))
    mask = (
        temporal_mask(ds, test_fraction)
        if kind == "temporal"
        else random_mask(ds, test_fraction, seed)
    )
    keep = pl.Series(mask)
    return interactions.filter(keep), interactions.filter(~keep)

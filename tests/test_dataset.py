"""Event weights, recency decay and confidence transforms."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from formats.events import INTERACTION_TYPES
from formats.weights import WeightConfig
from training.dataset import build_dataset, user_item_matrix


def frame(rows: list[tuple[str, str, int, str]]) -> pl.DataFrame:
    c, p, t, e = zip(*rows, strict=True)
    return pl.DataFrame(
        {
            "customer_id": c,
            "product_id": p,
            "timestamp": pl.from_epoch(pl.Series(t), time_unit="s").dt.replace_time_zone("UTC"),
            "event_type": e,
            "quantity": [1.0] * len(rows),
        }
    )


CATALOG = pl.DataFrame({"product_id": ["p0", "p1", "p2"], "category": ["a", "a", "b"]})
DAY = 86400


def test_unknown_products_are_dropped_and_counted() -> None:
    ds, unknown = build_dataset(frame([("c0", "p0", 0, "view"), ("c0", "zz", 0, "view")]), CATALOG)
    assert unknown == 1
    assert ds.n_rows == 1 and ds.n_items == 3


def test_event_weights_sum_per_pair_before_the_transform() -> None:
    rows = [("c0", "p0", 0, "view"), ("c0", "p0", 1, "purchase"), ("c1", "p1", 0, "click")]
    ds, _ = build_dataset(frame(rows), CATALOG)
    m = user_item_matrix(ds, WeightConfig(confidence="log", user_exponent=0, item_exponent=0))
    assert m[0, 0] == pytest.approx(np.log1p(1.0 + 0.1))
    assert m[1, 1] == pytest.approx(np.log1p(0.25))
    binary = user_item_matrix(
        ds, WeightConfig(confidence="binary", user_exponent=0, item_exponent=0)
    )
    assert sorted(binary.data.tolist()) == [1.0, 1.0]


def test_zero_weight_events_are_ignored() -> None:
    ds, _ = build_dataset(frame([("c0", "p0", 0, "view"), ("c0", "p1", 0, "purchase")]), CATALOG)
    weights = {e: 0.0 for e in INTERACTION_TYPES} | {"purchase": 1.0}
    m = user_item_matrix(
        ds,
        WeightConfig(event_weights=weights, confidence="binary", user_exponent=0, item_exponent=0),
    )
    assert m.nnz == 1 and m[0, 1] == 1.0


def test_recency_decay_halves_weight_per_half_life() -> None:
    rows = [("c0", "p0", 0, "purchase"), ("c0", "p1", 10 * DAY, "purchase")]
    ds, _ = build_dataset(frame(rows), CATALOG)
    cfg = WeightConfig(confidence="log", half_life_days=10, user_exponent=0, item_exponent=0)
    m = user_item_matrix(ds, cfg)
    assert m[0, 0] == pytest.approx(np.log1p(0.5))
    assert m[0, 1] == pytest.approx(np.log1p(1.0))


def test_count_exponents_damp_heavy_customers_and_popular_products() -> None:
    # c0 has three products, c1 one; p0 has two customers, p1 and p2 one each.
    rows = [("c0", "p0", 0, "purchase"), ("c0", "p1", 0, "purchase"), ("c0", "p2", 0, "purchase")]
    ds, _ = build_dataset(frame([*rows, ("c1", "p0", 0, "purchase")]), CATALOG)
    users = user_item_matrix(
        ds, WeightConfig(confidence="binary", user_exponent=1.0, item_exponent=0.0)
    )
    # Mean products per customer is 2: c0 gets 2/3, c1 gets 2.
    assert users[0, 1] == pytest.approx(2 / 3) and users[1, 0] == pytest.approx(2.0)
    items = user_item_matrix(
        ds, WeightConfig(confidence="binary", user_exponent=0.0, item_exponent=1.0)
    )
    # Mean customers per product is 4/3: p0 gets (4/3)/2, p1 gets 4/3.
    assert items[1, 0] == pytest.approx(2 / 3) and items[0, 1] == pytest.approx(4 / 3)

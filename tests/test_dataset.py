"""Event weights, recency and sequence decay, confidence transforms, item-to-item queries."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from formats.events import INTERACTION_TYPES
from formats.history import Histories
from formats.weights import WeightConfig, sequence_factor
from training.dataset import build_dataset, summarize, user_item_matrix


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


def test_sequence_decay_weighs_each_product_by_its_latest_position() -> None:
    # c0's history: p0, p1, p0 again (positions 0, 1, 2 of 3); c1 has one event.
    rows = [
        ("c0", "p0", 0, "purchase"),
        ("c0", "p1", 1, "purchase"),
        ("c0", "p0", 2, "purchase"),
        ("c1", "p2", 0, "purchase"),
    ]
    ds, _ = build_dataset(frame(rows), CATALOG)
    summary = summarize(ds, WeightConfig())
    assert summary.events.tolist() == [3, 1]
    assert summary.raw.toarray()[0].tolist() == [2.0, 1.0, 0.0]
    assert summary.rank.tolist() == [2, 1, 0]  # entries (c0,p0), (c0,p1), (c1,p2)
    cfg = WeightConfig(confidence="binary", user_exponent=0, item_exponent=0, sequence_decay=4.0)
    m = user_item_matrix(ds, cfg)
    assert m[0, 0] == pytest.approx(1.0)  # latest event last: r = 1
    assert m[0, 1] == pytest.approx(np.exp(-2.0))  # r = 1/2
    assert m[1, 2] == pytest.approx(1.0)  # a single event counts as the latest
    logged = user_item_matrix(ds, replace(cfg, confidence="log"))
    assert logged[0, 0] == pytest.approx(np.log1p(2.0))
    assert logged[0, 1] == pytest.approx(np.log1p(1.0) * np.exp(-2.0))
    bm25 = user_item_matrix(ds, replace(cfg, confidence="bm25"))
    plain = user_item_matrix(ds, replace(cfg, confidence="bm25", sequence_decay=0.0))
    assert bm25[0, 1] == pytest.approx(plain[0, 1] * np.exp(-2.0))


def test_positions_count_weighted_events_only() -> None:
    # A zero-weight view between two purchases takes no position.
    rows = [("c0", "p0", 0, "purchase"), ("c0", "p2", 1, "view"), ("c0", "p1", 2, "purchase")]
    weights = {e: 0.0 for e in INTERACTION_TYPES} | {"purchase": 1.0}
    ds, _ = build_dataset(frame(rows), CATALOG)
    summary = summarize(ds, WeightConfig(event_weights=weights))
    assert summary.events.tolist() == [2] and summary.rank.tolist() == [0, 1]


def test_weights_from_an_older_manifest_have_no_decay() -> None:
    old = WeightConfig().to_dict()
    del old["sequence_decay"]
    assert WeightConfig.from_dict(old) == WeightConfig()
    assert WeightConfig.from_dict(old).sequence_decay == 0.0
    assert WeightConfig.from_dict(WeightConfig(sequence_decay=2.5).to_dict()).sequence_decay == 2.5
    with pytest.raises(ValueError, match="unknown weight settings"):
        WeightConfig.from_dict({**old, "from_the_future": 1})


def test_sequence_factor_runs_from_exp_minus_d_to_one() -> None:
    f = sequence_factor(np.array([0, 2, 4, 0]), np.array([5, 5, 5, 1]), 3.0)
    np.testing.assert_allclose(f, [np.exp(-3.0), np.exp(-1.5), 1.0, 1.0], rtol=1e-6)
    assert (sequence_factor(np.array([0, 3]), np.array([4, 4]), 0.0) == 1.0).all()


def test_item2item_queries_keep_the_recent_products_decayed() -> None:
    # c0: p0, p1, p2 in that order.
    rows = [("c0", "p0", 0, "purchase"), ("c0", "p1", 1, "purchase"), ("c0", "p2", 2, "purchase")]
    ds, _ = build_dataset(frame(rows), CATALOG)
    summary = summarize(ds, WeightConfig())
    query = summary.query(WeightConfig(confidence="binary"), decay=2.0, recent=2)
    assert query.indices.tolist() == [1, 2]  # p0, the oldest, is left out
    np.testing.assert_allclose(query.data, [np.exp(-1.0), 1.0], rtol=1e-6)
    everything = summary.query(WeightConfig(confidence="binary"), decay=0.0, recent=0)
    assert everything.toarray().tolist() == [[1.0, 1.0, 1.0]]


def test_serving_queries_equal_the_training_query_matrix() -> None:
    """formats.history computes one customer's query without a matrix; the numbers must be
    training's (recent cut, ties, decay, transform)."""
    rng = np.random.default_rng(0)
    n = 400
    rows = [
        (
            f"c{rng.integers(30)}",
            f"p{rng.integers(3)}",
            int(t),
            str(rng.choice(["view", "purchase"])),
        )
        for t in rng.integers(0, 50, n)
    ]
    ds, _ = build_dataset(frame(rows), CATALOG)
    summary = summarize(ds, WeightConfig())
    histories = Histories(summary.raw, summary.extra())
    for decay, recent, confidence in ((3.0, 2, "log"), (0.0, 0, "binary"), (1.0, 1, "bm25")):
        cfg = WeightConfig(confidence=confidence)  # type: ignore[arg-type]
        matrix = summary.query(cfg, decay, recent)
        for u in range(ds.n_users):
            items, weights = histories.of(u).query_weights(decay, recent, cfg.confidence)
            row = matrix[u]
            assert items.tolist() == row.indices.tolist()
            np.testing.assert_array_equal(weights, row.data)

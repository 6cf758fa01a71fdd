"""Ranking metrics against hand-computed values, and the hold-out splits."""

from __future__ import annotations

from math import log2

import numpy as np
import polars as pl
import pytest
from scipy.sparse import csr_matrix

from formats.events import INTERACTION_TYPES
from training import metrics
from training.dataset import Dataset
from training.metrics import evaluate, mask_seen, recommend_batch, top_k
from training.split import make_split, random_mask, temporal_mask


def matrix(rows: list[list[int]], n_items: int) -> csr_matrix:
    """A 0/1 customers x products matrix from each customer's product list."""
    dense = np.zeros((len(rows), n_items), dtype=np.float32)
    for u, items in enumerate(rows):
        dense[u, items] = 1.0
    return csr_matrix(dense)


def pairs(m: csr_matrix) -> set[tuple[int, int]]:
    r, c = m.nonzero()
    return {(int(u), int(i)) for u, i in zip(r, c, strict=True)}


# ---------------------------------------------------------------------------------------------
# top_k, mask_seen


def test_top_k_is_best_first_and_clipped_to_the_row() -> None:
    scores = np.array(
        [[0.1, 0.5, 0.3, 0.9, -1.0], [5.0, 4.0, 3.0, 2.0, 1.0], [-3.0, -1.0, -2.0, 0.0, 7.0]],
        dtype=np.float32,
    )
    assert top_k(scores, 3).tolist() == [[3, 1, 2], [0, 1, 2], [4, 3, 1]]
    assert top_k(scores, 1).tolist() == [[3], [0], [4]]
    assert top_k(scores, 10).tolist() == [[3, 1, 2, 0, 4], [0, 1, 2, 3, 4], [4, 3, 1, 2, 0]]


def test_mask_seen_sets_seen_scores_to_minus_infinity() -> None:
    seen = matrix([[0, 2], [], [1]], 4)
    scores = np.ones((2, 4), dtype=np.float32)
    mask_seen(scores, seen, np.array([2, 0]))  # rows are customers 2 and 0, in that order
    assert np.isneginf(scores).tolist() == [
        [False, True, False, False],
        [True, False, True, False],
    ]


def test_seen_items_are_never_recommended() -> None:
    rng = np.random.default_rng(7)
    n_users, n_items, k = 20, 30, 10
    table = rng.random((n_users, n_items)).astype(np.float32)
    seen = csr_matrix((rng.random((n_users, n_items)) < 0.5).astype(np.float32))
    assert np.diff(seen.indptr).max() <= n_items - k  # enough unseen products for a full list

    users = np.arange(n_users)
    top = recommend_batch(lambda u: table[u], seen, users, k)

    assert top.shape == (n_users, k)
    for u in users:
        seen_items = set(seen[u].indices.tolist())
        assert not seen_items & set(top[u].tolist())
        unseen = [i for i in np.argsort(-table[u], kind="stable") if i not in seen_items]
        assert top[u].tolist() == unseen[:k]  # the best unseen products, best first


def test_seen_items_are_not_recommended_even_when_k_exceeds_the_unseen() -> None:
    seen = matrix([[0, 1]], 4)
    scores = np.array([[4.0, 3.0, 2.0, 1.0]], dtype=np.float32)
    top = recommend_batch(lambda u: scores[u], seen, np.array([0]), 3)
    assert top[0].tolist() == [2, 3, -1]  # -1 pads: only two products are left unseen


def test_coverage_counts_only_products_actually_recommended() -> None:
    seen = matrix([[0, 1]], 4)
    targets = matrix([[2]], 4)
    scores = np.array([[4.0, 3.0, 2.0, 1.0]], dtype=np.float32)
    result = evaluate(lambda u: scores[u], seen, targets, k=3)
    assert result["coverage@3"] == pytest.approx(0.5)  # only products 2 and 3 can be shown


# ---------------------------------------------------------------------------------------------
# evaluate on a hand-computed case

SCORES = np.array(
    [
        [9, 5, 4, 3, 1],  # u0: seen {0} -> top [1, 2, 3]; targets {2, 4}: hit at rank 2
        [1, 9, 2, 8, 3],  # u1: seen {1} -> top [3, 4, 2]; targets {3}: hit at rank 1
        [0, 5, 4, 3, 2],  # u2: top [1, 2, 3]; targets {0}: no hit
        [9, 0, 0, 0, 0],  # u3: no targets, so not evaluated (and does not count for coverage)
        [1, 2, 3, 4, 5],  # u4: top [4, 3, 2]; targets {0, 1, 2, 4}: hits at ranks 1 and 3
    ],
    dtype=np.float32,
)
SEEN = matrix([[0], [1], [], [], []], 5)
TARGETS = matrix([[2, 4], [3], [0], [], [0, 1, 2, 4]], 5)


def scorer(users: np.ndarray) -> np.ndarray:
    scores: np.ndarray = SCORES[users].astype(np.float64)  # a float64 scorer is fine too
    return scores


def hand_computed() -> dict[str, float]:
    d1, d2, d3 = 1.0, 1 / log2(3), 1 / log2(4)  # rank discounts
    # Per evaluated customer (u0, u1, u2, u4); relevant count is capped at k = 3.
    ndcg = [d2 / (d1 + d2), 1.0, 0.0, (d1 + d3) / (d1 + d2 + d3)]
    recall = [1 / 2, 1.0, 0.0, 2 / 3]
    ap = [(1 / 2) / 2, 1.0, 0.0, (1 / 1 + 2 / 3) / 3]
    hit = [1.0, 1.0, 0.0, 1.0]
    return {
        "ndcg@3": sum(ndcg) / 4,
        "recall@3": sum(recall) / 4,
        "map@3": sum(ap) / 4,
        "hitrate@3": sum(hit) / 4,
        "coverage@3": 4 / 5,  # products 1, 2, 3, 4 were recommended to someone
    }


def test_evaluate_matches_hand_computed_values() -> None:
    result = evaluate(scorer, SEEN, TARGETS, k=3)
    expected = hand_computed()
    assert set(result) == set(expected)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, abs=1e-6), name
    # spelled out, to catch a shared mistake in hand_computed()
    assert result["ndcg@3"] == pytest.approx(0.5227, abs=1e-4)
    assert result["recall@3"] == pytest.approx(0.5417, abs=1e-4)
    assert result["map@3"] == pytest.approx(0.4514, abs=1e-4)
    assert result["hitrate@3"] == pytest.approx(0.75)


def test_evaluate_in_small_batches_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = evaluate(scorer, SEEN, TARGETS, k=3)
    monkeypatch.setattr(metrics, "_BATCH_CELLS", 1)  # one customer per batch
    assert evaluate(scorer, SEEN, TARGETS, k=3) == pytest.approx(whole)


def test_evaluate_on_chosen_users_skips_those_without_targets() -> None:
    result = evaluate(scorer, SEEN, TARGETS, k=3, users=np.array([2, 3]))  # u3 has no targets
    assert result == pytest.approx(
        {"ndcg@3": 0.0, "recall@3": 0.0, "map@3": 0.0, "hitrate@3": 0.0, "coverage@3": 3 / 5}
    )
    result = evaluate(scorer, SEEN, TARGETS, k=1, users=np.array([1]))
    assert result == pytest.approx(
        {"ndcg@1": 1.0, "recall@1": 1.0, "map@1": 1.0, "hitrate@1": 1.0, "coverage@1": 1 / 5}
    )


def test_evaluate_perfect_ranking_scores_one() -> None:
    targets = matrix([[3, 4], [0]], 5)
    seen = matrix([[0], []], 5)
    scores = np.array([[9, 1, 2, 8, 7], [5, 4, 3, 2, 1]], dtype=np.float32)
    result = evaluate(lambda u: scores[u], seen, targets, k=2)
    for name in ("ndcg@2", "recall@2", "map@2", "hitrate@2"):
        assert result[name] == pytest.approx(1.0), name


# ---------------------------------------------------------------------------------------------
# Splits


def dataset(rows: list[tuple[int, int, int, str]], n_users: int, n_items: int) -> Dataset:
    """rows: (customer index, product index, unix time, event type)."""
    user, item, ts, event = zip(*rows, strict=True)
    return Dataset(
        customer_ids=pl.Series("customer_id", [f"c{u}" for u in range(n_users)]),
        catalog=pl.DataFrame({"product_id": [f"p{i}" for i in range(n_items)]}),
        user=np.array(user, dtype=np.int32),
        item=np.array(item, dtype=np.int32),
        ts=np.array(ts, dtype=np.int64),
        event=np.array([INTERACTION_TYPES.index(e) for e in event], dtype=np.int8),
        quantity=np.ones(len(rows), dtype=np.float32),
    )


# Rows deliberately not in time order, customers interleaved.
TEMPORAL_ROWS = [
    (0, 0, 50, "purchase"),  # 0: c0 latest
    (2, 1, 7, "purchase"),  # 1: c2 latest
    (0, 1, 10, "purchase"),  # 2
    (1, 2, 5, "purchase"),  # 3: c1's only interaction
    (0, 2, 40, "purchase"),  # 4: c0 second latest
    (2, 3, 3, "purchase"),  # 5
    (0, 3, 20, "purchase"),  # 6
    (0, 4, 30, "purchase"),  # 7
]


def test_temporal_mask_holds_out_each_customers_latest() -> None:
    ds = dataset(TEMPORAL_ROWS, n_users=3, n_items=5)

    # 40%: c0 (5 rows) -> 2 held out, c2 (2 rows) -> 1, c1 (1 row) -> stays in training.
    assert temporal_mask(ds, 0.4).tolist() == [False, False, True, True, False, True, True, True]
    # 20%: c0 -> 1; c2 -> at least 1; c1 -> 0.
    assert temporal_mask(ds, 0.2).tolist() == [False, False, True, True, True, True, True, True]


def test_temporal_mask_keeps_single_interaction_customers_in_training() -> None:
    rows = [(u, u % 3, 100 + u, "purchase") for u in range(6)]
    ds = dataset(rows, n_users=6, n_items=3)
    for fraction in (0.1, 0.5, 0.9):
        assert temporal_mask(ds, fraction).all()


def test_temporal_mask_held_out_rows_are_never_older_than_training_rows() -> None:
    rng = np.random.default_rng(3)
    rows = [
        (int(u), int(i), int(t), "purchase")
        for u, i, t in zip(
            rng.integers(0, 15, 200), rng.integers(0, 10, 200), rng.permutation(200), strict=True
        )
    ]
    ds = dataset(rows, n_users=15, n_items=10)
    train = temporal_mask(ds, 0.25)
    for u in range(15):
        mine = ds.user == u
        if mine.sum() >= 2:
            assert (~train & mine).sum() == max(1, round(mine.sum() * 0.25))
            assert ds.ts[train & mine].max() < ds.ts[~train & mine].min()


def test_random_mask_is_deterministic_per_seed_with_the_right_size() -> None:
    rows = [(u % 7, u % 5, u, "purchase") for u in range(50)]
    ds = dataset(rows, n_users=7, n_items=5)

    a = random_mask(ds, 0.2, seed=1)
    assert a.dtype == np.bool_
    assert a.shape == (50,)
    assert a.sum() == 40
    np.testing.assert_array_equal(a, random_mask(ds, 0.2, seed=1))
    assert not np.array_equal(a, random_mask(ds, 0.2, seed=2))
    assert random_mask(ds, 0.3, seed=5).sum() == 35


def test_make_split_keeps_only_predictable_targets() -> None:
    rows = [
        (0, 0, 1, "purchase"),
        (0, 1, 2, "purchase"),
        (0, 1, 3, "purchase"),  # test: c0 already had p1 in training -> dropped
        (0, 3, 4, "purchase"),  # test: p3 was seen in training (by c1) -> the target
        (1, 2, 1, "purchase"),
        (1, 3, 2, "purchase"),
        (1, 4, 3, "purchase"),  # test: p4 appears nowhere in training -> dropped
        (1, 0, 4, "view"),  # test: not a target event by default
        (2, 0, 1, "purchase"),  # c2's single interaction stays in training
    ]
    ds = dataset(rows, n_users=3, n_items=5)

    split = make_split(ds, "temporal", test_fraction=0.5)

    assert pairs(split.targets) == {(0, 3)}
    assert split.targets.shape == (3, 5)
    assert split.eval_users.tolist() == [0]
    assert split.train.n_rows == 5
    assert (split.train.n_users, split.train.n_items) == (3, 5)  # same id spaces

    with_views = make_split(ds, "temporal", test_fraction=0.5, target_events=("purchase", "view"))
    assert pairs(with_views.targets) == {(0, 3), (1, 0)}
    assert with_views.targets.data.tolist() == [1.0, 1.0]


def test_make_split_drops_customers_unseen_in_training() -> None:
    rows = [(u, i, 10 * u + i, "purchase") for u in range(5) for i in range(4)]
    rows += [(u, (u - 5) % 4, 100 + u, "purchase") for u in range(5, 12)]  # single-row customers
    ds = dataset(rows, n_users=12, n_items=6)  # p4 and p5 are never bought
    exercised = False
    for seed in range(6):
        train_mask = random_mask(ds, 0.3, seed)
        split = make_split(ds, "random", test_fraction=0.3, seed=seed)
        train_users = set(ds.user[train_mask].tolist())
        train_items = set(ds.item[train_mask].tolist())
        train_pairs = set(
            zip(ds.user[train_mask].tolist(), ds.item[train_mask].tolist(), strict=True)
        )
        held_out = zip(ds.user[~train_mask].tolist(), ds.item[~train_mask].tolist(), strict=True)
        expected = {
            (u, i)
            for u, i in held_out
            if u in train_users and i in train_items and (u, i) not in train_pairs
        }
        exercised |= bool(set(range(12)) - train_users)
        assert pairs(split.targets) == expected, seed
        np.testing.assert_array_equal(split.train.user, ds.user[train_mask])
    assert exercised  # some seed held out a customer's whole history


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_make_split_rejects_a_bad_fraction(fraction: float) -> None:
    ds = dataset(TEMPORAL_ROWS, n_users=3, n_items=5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        make_split(ds, test_fraction=fraction)


def test_temporal_split_keeps_one_training_row_even_for_large_fractions() -> None:
    rows = [(0, 0, 1, "view"), (0, 1, 2, "view"), (1, 0, 1, "view"), (1, 1, 2, "view")]
    ds = dataset([*rows, (1, 2, 3, "purchase")], n_users=2, n_items=3)
    train = temporal_mask(ds, 0.9)
    assert train.tolist() == [True, False, True, False, False]

"""ANN recall measurement: tie-aware, zero queries skipped."""

from __future__ import annotations

import numpy as np

from training.index import IndexConfig, build_index, measure_recall


def test_exact_index_has_recall_one() -> None:
    vectors = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    index = build_index(vectors, IndexConfig())
    assert measure_recall(index, vectors, vectors[:5], 10) == 1.0


def test_zero_vectors_and_zero_queries_do_not_count_as_misses() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    vectors[::2] = 0.0  # products nobody interacted with
    index = build_index(vectors, IndexConfig(exact_max_items=10, ef_search=256))
    queries = np.vstack([np.zeros((50, 16), np.float32), rng.standard_normal((50, 16))])
    assert measure_recall(index, vectors, queries, 20) >= 0.95


def test_a_starved_hnsw_search_measures_low_recall() -> None:
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((5000, 32)).astype(np.float32)
    index = build_index(
        vectors, IndexConfig(exact_max_items=10, hnsw_m=4, ef_construction=8, ef_search=1)
    )
    assert measure_recall(index, vectors, rng.standard_normal((100, 32)), 20) < 0.9


def test_ef_search_is_the_cheapest_step_reaching_the_target() -> None:
    from training.index import EF_SEARCH_STEPS, tune_ef_search

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((4000, 16)).astype(np.float32)
    cfg = IndexConfig(exact_max_items=10, recall_target=0.97)
    index = build_index(vectors, cfg)
    queries = rng.standard_normal((200, 16)).astype(np.float32)
    recall = tune_ef_search(index, vectors, queries, cfg)
    chosen = index.hnsw.efSearch
    assert recall >= 0.97
    cheaper = [ef for ef in EF_SEARCH_STEPS if ef < chosen]
    for ef in cheaper:
        index.hnsw.efSearch = ef
        assert measure_recall(index, vectors, queries, cfg.recall_k) < 0.97
    fixed = IndexConfig(exact_max_items=10, ef_search=48)
    index = build_index(vectors, fixed)
    tune_ef_search(index, vectors, queries, fixed)
    assert index.hnsw.efSearch == 48

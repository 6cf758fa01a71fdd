"""How well products without history are served: a share of products with interactions is
hidden from a model fit, their vectors are predicted by the content model, and

- ranking: for each customer who interacted with hidden products, the hidden products ranked
  by the customer's vector against each predicted vector: NDCG@k, beside a random order
  (its expected NDCG, exact) and the mean vector of the product's category;
- similar products: each hidden product's k nearest products by inner product (the serving
  search) among all products: the share of its category, beside that category's base rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from formats.weights import WeightConfig
from training.content import ContentConfig, fit_content
from training.dataset import Dataset, binary_matrix, user_item_matrix
from training.metrics import top_k
from training.models import ALSModel, ALSParams

_BATCH_CELLS = 1 << 23  # scores held at once (32 MB of float32)


@dataclass(frozen=True)
class ColdStartConfig:
    fraction: float = 0.1  # of the products with interactions; 0 = no evaluation
    k: int = 20
    max_customers: int = 10_000  # customers whose ranking is scored, at most
    # The extra fit uses at most this many (bounds its cost: 200,000 took 148 s of a 20M run).
    max_fit_customers: int = 50_000
    max_hidden: int = 10_000  # candidates ranked per customer, at most
    max_queries: int = 2_000  # hidden products whose neighbours are checked, at most
    seed: int = 0


def hidden_products(has_history: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indexes of ``fraction`` of the products with history, chosen at random."""
    candidates = np.flatnonzero(has_history)
    n = round(len(candidates) * fraction)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(candidates, size=n, replace=False)) if n else candidates[:0]


def ranking_ndcg(users: np.ndarray, items: np.ndarray, relevant: csr_matrix, k: int) -> float:
    """Mean NDCG@k of ranking ``items`` (rows: the candidate products) by ``users @ items.T``."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    total = 0.0
    step = max(1, _BATCH_CELLS // max(len(items), 1))
    for start in range(0, len(users), step):
        scores = users[start : start + step] @ items.T
        top = top_k(scores, k)
        rel = np.asarray(relevant[start : start + step].todense()) > 0
        hits = np.take_along_axis(rel, top, axis=1)
        ideal = np.cumsum(discounts)[np.minimum(rel.sum(axis=1), k) - 1]
        total += float(((hits @ discounts[: top.shape[1]]) / ideal).sum())
    return total / max(len(users), 1)


def random_ndcg(relevant: csr_matrix, k: int) -> float:
    """Expected NDCG@k of a uniformly random order (each position holds a relevant product
    with probability relevant/candidates)."""
    n = relevant.shape[1]
    m = np.diff(relevant.indptr)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[np.minimum(m, k) - 1]
    return float(((m / n) * discounts[: min(k, n)].sum() / ideal).mean())


def category_precision(
    vectors: np.ndarray, category: np.ndarray, queries: np.ndarray, k: int
) -> tuple[float, float]:
    """(share of each query's k best inner-product neighbours in its category, base rate)."""
    shares = []
    step = max(1, _BATCH_CELLS // max(len(vectors), 1))
    for start in range(0, len(queries), step):
        part = queries[start : start + step]
        scores = vectors[part] @ vectors.T
        scores[np.arange(len(part)), part] = -np.inf
        top = top_k(scores, k)
        shares.append((category[top] == category[part][:, None]).mean(axis=1))
    sizes = np.bincount(category, minlength=int(category.max()) + 1)
    base = (sizes[category[queries]] - 1) / max(len(category) - 1, 1)
    return float(np.concatenate(shares).mean()), float(base.mean())


def category_means(vectors: np.ndarray, category: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Mean vector per category over ``rows`` (zeros for a category without any)."""
    n_cat = int(category.max()) + 1
    sums = np.zeros((n_cat, vectors.shape[1]))
    np.add.at(sums, category[rows], vectors[rows])
    counts = np.bincount(category[rows], minlength=n_cat)[:, None]
    means: np.ndarray = (sums / np.maximum(counts, 1)).astype(np.float32)
    return means


def evaluate_cold_start(
    ds: Dataset,
    weights: WeightConfig,
    als_params: ALSParams,
    content: ContentConfig,
    cfg: ColdStartConfig,
) -> dict[str, Any] | None:
    """Hide, refit, predict, measure; None when there is too little to hide or to measure."""
    started = time.perf_counter()
    seen = binary_matrix(ds.user, ds.item, (ds.n_users, ds.n_items))
    history = np.bincount(seen.indices, minlength=ds.n_items) > 0
    hidden = hidden_products(history, cfg.fraction, cfg.seed)
    if len(hidden) > cfg.max_hidden:  # ranked for each customer: keep that bounded
        hidden = np.sort(np.random.default_rng(cfg.seed).choice(hidden, cfg.max_hidden, False))
    if len(hidden) < 2:
        return None
    is_hidden = np.zeros(ds.n_items, dtype=bool)
    is_hidden[hidden] = True
    keep = ~is_hidden[ds.item]
    fit_customers = ds.n_users
    if ds.n_users > cfg.max_fit_customers:  # a sample of customers, all of their history
        rng = np.random.default_rng(cfg.seed)
        chosen = np.zeros(ds.n_users, dtype=bool)
        chosen[rng.choice(ds.n_users, cfg.max_fit_customers, replace=False)] = True
        keep &= chosen[ds.user]
        fit_customers = cfg.max_fit_customers
    matrix = user_item_matrix(ds.subset(keep), weights)
    als = ALSModel(als_params)
    als.fit(matrix)
    warm = np.bincount(matrix.indices, minlength=ds.n_items) > 0
    model, _ = fit_content(ds.catalog, als.item_factors, warm, content)
    predicted = model.predict(ds.catalog[hidden.tolist()])
    relevant = seen.tocsc()[:, hidden].tocsr()
    users = np.flatnonzero((np.diff(relevant.indptr) > 0) & (np.diff(matrix.indptr) > 0))
    if len(users) == 0:
        return None
    if len(users) > cfg.max_customers:
        users = np.sort(np.random.default_rng(cfg.seed).choice(users, cfg.max_customers, False))
    codes = ds.catalog["category"].cast(str).fill_null("uncategorized").to_list()
    names = {c: i for i, c in enumerate(dict.fromkeys(codes))}
    category = np.array([names[c] for c in codes], dtype=np.int64)
    means = category_means(als.item_factors, category, np.flatnonzero(warm))
    u, rel = als.user_factors[users], relevant[users]
    vectors = als.item_factors.copy()
    vectors[hidden] = predicted
    rng = np.random.default_rng(cfg.seed)
    queries = (
        hidden if len(hidden) <= cfg.max_queries else rng.choice(hidden, cfg.max_queries, False)
    )
    precision, base = category_precision(vectors, category, np.sort(queries), cfg.k)
    k = cfg.k
    return {
        "hidden_products": len(hidden),
        "fraction": cfg.fraction,
        "fit_customers": fit_customers,
        "customers": len(users),
        "k": k,
        "ranking": {
            "content": ranking_ndcg(u, predicted, rel, k),
            "category_mean": ranking_ndcg(u, means[category[hidden]], rel, k),
            "random": random_ndcg(rel, k),
        },
        "similar_products": {"same_category": precision, "base_rate": base},
        "seconds": round(time.perf_counter() - started, 3),
    }


def format_cold_start(report: dict[str, Any]) -> str:
    r, s, k = report["ranking"], report["similar_products"], report["k"]
    return (
        f"cold start ({report['hidden_products']:,} products hidden from a refit, "
        f"{report['customers']:,} customers): ranking them NDCG@{k} content "
        f"{r['content']:.4f}, category mean {r['category_mean']:.4f}, random {r['random']:.4f} "
        f"({r['content'] / max(r['random'], 1e-12):.1f}x random); similar products in the "
        f"same category {s['same_category']:.3f} vs base rate {s['base_rate']:.3f}"
    )

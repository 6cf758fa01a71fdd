"""Recommendation models behind one interface: fit on a customer x product matrix, score rows.

ALS (implicit) is the personalized model; popularity and item-item cosine are the baselines
and the cold-start fallback. CPU or GPU is chosen once, in ``ALSModel.fit``.
"""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

import numpy as np
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

# implicit warns (and runs ~20x slower per solve) when OpenBLAS spawns its own threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


class Model(ABC):
    name: str

    @abstractmethod
    def fit(self, user_items: csr_matrix, progress: bool = False) -> None:
        """Learn from a customers x products confidence matrix."""

    @abstractmethod
    def score(self, users: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        """Dense (len(users), n_products) scores; higher is better."""


class PopularityModel(Model):
    """Global popularity: how many customers interacted with each product."""

    name = "popularity"

    def __init__(self) -> None:
        self.item_scores = np.zeros(0, dtype=np.float32)

    def fit(self, user_items: csr_matrix, progress: bool = False) -> None:
        self.item_scores = np.bincount(user_items.indices, minlength=user_items.shape[1]).astype(
            np.float32
        )

    def score(self, users: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        return np.tile(self.item_scores, (len(users), 1))


class ItemKNNModel(Model):
    """Item-item cosine similarity, top-K neighbours per product (implicit's CosineRecommender)."""

    name = "itemknn"

    def __init__(self, k: int = 100) -> None:
        from implicit.nearest_neighbours import CosineRecommender

        self._model = CosineRecommender(K=k)

    def fit(self, user_items: csr_matrix, progress: bool = False) -> None:
        binary = user_items.copy()
        binary.data[:] = 1.0
        with warnings.catch_warnings():
            # implicit normalises to COO internally, then warns about its own conversion.
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            self._model.fit(binary, show_progress=progress)

    @property
    def similarity(self) -> csr_matrix:
        return csr_matrix(self._model.similarity)

    def score(self, users: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        rows = user_items[users].copy()
        rows.data[:] = 1.0
        return np.asarray((rows @ self.similarity).todense(), dtype=np.float32)


@dataclass(frozen=True)
class ALSParams:
    # Defaults (with WeightConfig's): a compromise measured on synthetic retail worlds of 3k to
    # 200k customers (within 5% of the best tried on each); use --tune on your data.
    factors: int = 128
    regularization: float = 10.0
    alpha: float = 10.0
    iterations: int = 15
    random_state: int = 0

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def use_gpu() -> bool:
    """The one place CPU vs GPU is decided: GPU when implicit was built with CUDA and sees one."""
    import implicit.gpu

    return bool(implicit.gpu.HAS_CUDA) and os.environ.get("RECSVC_USE_GPU", "1") != "0"


class ALSModel(Model):
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008) via the ``implicit`` library."""

    name = "als"

    def __init__(self, params: ALSParams) -> None:
        self.params = params
        self.user_factors = np.zeros((0, params.factors), dtype=np.float32)
        self.item_factors = np.zeros((0, params.factors), dtype=np.float32)

    def fit(
        self,
        user_items: csr_matrix,
        progress: bool = False,
        warm_start: ALSModel | None = None,
        iterations: int | None = None,
    ) -> None:
        """Fit; with ``warm_start`` (a model over the same id spaces, e.g. fit on a training
        split) start from its item vectors, so a refit on all data needs few iterations."""
        from implicit.als import AlternatingLeastSquares

        p = self.params
        # faiss ships an OpenMP OpenBLAS that ignores OPENBLAS_NUM_THREADS; limit every BLAS
        # (implicit checks this when the model is built, so build it inside too).
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=p.factors,
                regularization=p.regularization,
                alpha=p.alpha,
                iterations=iterations or p.iterations,
                random_state=p.random_state,
                use_gpu=use_gpu(),
            )
            if warm_start is not None:
                if warm_start.item_factors.shape != (user_items.shape[1], p.factors):
                    raise ValueError("warm start needs a model over the same products and factors")
                # Each iteration solves customers first, so only the item vectors matter here.
                model.user_factors = np.zeros((user_items.shape[0], p.factors), dtype=np.float32)
                model.item_factors = warm_start.item_factors.copy()
            model.fit(user_items, show_progress=progress)
        if hasattr(model, "to_cpu"):
            model = model.to_cpu()
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def score(self, users: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        scores: np.ndarray = self.user_factors[users] @ self.item_factors.T
        return scores

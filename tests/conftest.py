"""Shared fixtures: small input files and hand-built model bundles, all under tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy.sparse import csr_matrix

from formats.bundle import BundleContents, publish, write_bundle
from training.index import IndexConfig, build_index

WriteCsv = Callable[[str, Sequence[str]], Path]
MakeContents = Callable[..., BundleContents]
AddBundle = Callable[..., str]

# Fixture modules, registered here once for every test module: a test asks for a fixture by
# argument name and never imports it (plain helpers in them are imported as usual).
# grpc_helpers first: redis_fixtures imports it, and a plugin imported before it is registered
# loses pytest's assertion rewriting.
pytest_plugins = ("grpc_helpers", "redis_fixtures", "spark_fixtures", "web_helpers")


@pytest.fixture(autouse=True)
def _fixed_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """argparse wraps help text by $COLUMNS; keep it the same everywhere."""
    monkeypatch.setenv("COLUMNS", "100")


@pytest.fixture
def write_csv(tmp_path: Path) -> WriteCsv:
    """Write ``lines`` (the first one is the header, i.e. CSV line 1) to ``tmp_path/name``."""

    def write(name: str, lines: Sequence[str]) -> Path:
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        return path

    return write


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


def _contents(
    seed: int = 0,
    n_users: int = 6,
    n_items: int = 8,
    factors: int = 4,
    index: Any = "build",
    user_items: Any = None,
) -> BundleContents:
    rng = np.random.default_rng(seed)
    user_factors = rng.standard_normal((n_users, factors)).astype(np.float32)
    item_factors = rng.standard_normal((n_items, factors)).astype(np.float32)
    if user_items is None:
        dense = (rng.random((n_users, n_items)) < 0.4).astype(np.float32)
        user_items = csr_matrix(dense)
    if isinstance(index, str) and index == "build":
        index = build_index(item_factors, IndexConfig())
    products = pl.DataFrame(
        {
            "product_id": [f"p{i}" for i in range(n_items)],
            "title": [f"Product {i}" for i in range(n_items)],
            "category": ["shoes" if i % 2 else "hats" for i in range(n_items)],
            "price": [float(i) + 0.5 for i in range(n_items)],
            "in_stock": [i % 3 != 0 for i in range(n_items)],
            "popularity": np.arange(n_items, dtype=np.float32),
        }
    )
    manifest: dict[str, Any] = {
        "created_at": "2026-01-01T00:00:00+00:00",
        "model": "als",
        "seed": seed,
        "counts": {
            "customers": n_users,
            "products": n_items,
            "interactions": getattr(user_items, "nnz", 0),
        },
        "evaluation": {"k": 5, "models": {"als": {"ndcg@5": 0.25}}},
    }
    return BundleContents(
        manifest=manifest,
        customer_ids=pl.Series("customer_id", [f"c{u}" for u in range(n_users)]),
        products=products,
        user_factors=user_factors,
        item_factors=item_factors,
        user_items=user_items,
        index=index,
    )


@pytest.fixture
def make_contents() -> MakeContents:
    """Factory for a small random BundleContents (deterministic per ``seed``)."""
    return _contents


@pytest.fixture
def add_bundle(model_dir: Path) -> AddBundle:
    """Write a bundle named ``version`` into ``model_dir``; publish it unless told not to."""

    def add(version: str, seed: int = 0, publish_it: bool = True) -> str:
        write_bundle(model_dir, _contents(seed=seed), version)
        if publish_it:
            publish(model_dir, version)
        return version

    return add


def damage(path: Path) -> None:
    """Flip every bit of one byte in the middle of ``path`` (same size, different content)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def damage_file() -> Callable[[Path], None]:
    return damage

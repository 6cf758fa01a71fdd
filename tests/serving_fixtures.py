"""Trained model bundles for the serving tests (engine, server, `recsvc serve`).

Bundles are trained once per test session on one small synthetic world and cached here;
tests that change a model directory (publish, damage, hot swap) copy bundles into their own
directory with :func:`add_copy` so the cached ones stay untouched.
"""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from formats import bundle as b
from training import synth
from training.cold_start import ColdStartConfig
from training.config import TrainConfig
from training.index import IndexConfig
from training.train import run

WORLD = synth.SynthConfig(customers=2000, products=200, seed=7)
NO_PRICE_EVERY = 17  # every 17th catalog product has no price (fails every price bound)
# The cold-start check (an extra fit) is tested in test_content.py; here it only costs time.
QUIET = TrainConfig(
    progress=False,
    baselines=("popularity",),
    clv_check=False,
    cold_start=ColdStartConfig(fraction=0.0),
)
ALS = replace(
    QUIET, use_item2item=False, use_item2vec=False
)  # the ALS-only bundles most serving tests read
TRAIN_CONFIGS = {
    "exact": ALS,
    # More than 10 products: the trainer builds an HNSW index instead of an exact one.
    "hnsw": replace(ALS, index=IndexConfig(exact_max_items=10)),
    # A different model over the same catalog (another seed, no refit).
    "other": replace(ALS, seed=1, refit=False),
    # The item-to-item model serves recommendations, similar products and sessions.
    "item2item": replace(
        QUIET, serve="item2item", serve_similar="item2item", serve_session="item2item"
    ),
    "blend": replace(QUIET, serve="blend", serve_similar="als", serve_session="als"),
    # item2vec serves similar products and sessions.
    "item2vec": replace(QUIET, serve="als", serve_similar="item2vec", serve_session="item2vec"),
}

_world: dict[str, Path] = {}
_trained: dict[str, Path] = {}


def world(factory: pytest.TempPathFactory) -> dict[str, Path]:
    """interactions / catalog / customers files of the shared world (written once)."""
    if not _world:
        files = synth.write_world(synth.generate(WORLD), factory.mktemp("serving-world"))
        catalog = pl.read_parquet(files["catalog"])
        row = pl.int_range(pl.len())
        catalog.with_columns(
            pl.when(row % NO_PRICE_EVERY == 0).then(None).otherwise(pl.col("price")).alias("price")
        ).write_parquet(files["catalog"])
        _world.update(files)
    return dict(_world)


def trained(factory: pytest.TempPathFactory, kind: str = "exact") -> Path:
    """The directory of a bundle trained on :func:`world` (a key of TRAIN_CONFIGS)."""
    if kind not in _trained:
        files = world(factory)
        result = run(
            files["interactions"],
            factory.mktemp(f"trained-{kind}"),
            TRAIN_CONFIGS[kind],
            catalog=files["catalog"],
            echo=lambda _: None,
        )
        _trained[kind] = result.path
    return _trained[kind]


def add_copy(model_dir: Path, source: Path, version: str, publish: bool = False) -> str:
    """Write the bundle at ``source`` into ``model_dir`` as ``version``; maybe publish it."""
    b.write_bundle(model_dir, b.load_bundle(source), version)
    if publish:
        b.publish(model_dir, version)
    return version


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port

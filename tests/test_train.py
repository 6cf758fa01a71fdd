"""End to end: a small synthetic world through the whole training pipeline."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from formats import bundle as b
from recsvc.cli import main
from training import synth
from training.cold_start import ColdStartConfig
from training.config import TrainConfig
from training.index import IndexConfig
from training.train import TrainError, run

# The cold-start check (an extra fit) is tested in test_content.py; here it only costs time.
QUIET = TrainConfig(
    progress=False,
    baselines=("popularity",),
    clv_check=False,
    cold_start=ColdStartConfig(fraction=0.0),
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("world")
    cfg = synth.SynthConfig(customers=3000, products=300, seed=3)
    return synth.write_world(synth.generate(cfg), out)


def test_train_beats_popularity_and_publishes_a_loadable_bundle(
    world: dict[str, Path], tmp_path: Path
) -> None:
    lines: list[str] = []
    result = run(
        world["interactions"],
        tmp_path,
        replace(QUIET, baselines=("popularity", "itemknn"), clv_check=True),
        catalog=world["catalog"],
        customers=world["customers"],
        echo=lines.append,
    )
    metrics = result.manifest["evaluation"]["models"]
    assert metrics["als"]["ndcg@20"] > 1.5 * metrics["popularity"]["ndcg@20"]
    assert metrics["als"]["recall@20"] > metrics["popularity"]["recall@20"]
    assert set(metrics["als"]) == {"ndcg@20", "recall@20", "map@20", "hitrate@20", "coverage@20"}
    assert b.current_version(tmp_path) == result.version
    loaded = b.load_bundle(tmp_path / result.version)
    assert loaded.item_factors.shape[0] == pl.read_parquet(world["catalog"]).height
    assert loaded.user_items.shape == (len(loaded.customer_ids), loaded.item_factors.shape[0])
    assert loaded.manifest["params"]["refit_on_all_data"] is True
    assert any(line.startswith("held-out evaluation") for line in lines)
    assert any("ndcg@20" in line for line in lines)
    # The lifetime-value model's holdout check is reported and kept in the manifest.
    clv = result.manifest["clv_holdout"]
    assert clv["calibration_end"] < clv["holdout_end"] and clv["customers"] > 0
    assert clv["actual_repeat_purchases"] > 0 and -1 < clv["relative_error"] < 1
    assert 0 < clv["correlation"] <= 1
    assert any(line.startswith("CLV holdout check") for line in lines)


def test_tune_picks_from_the_search_space_on_validation_only(
    world: dict[str, Path], tmp_path: Path
) -> None:
    cfg = replace(QUIET, tune=True, tune_trials=3)
    result = run(
        world["interactions"], tmp_path, cfg, catalog=world["catalog"], echo=lambda _: None
    )
    trials = result.manifest["tuning"]
    assert len(trials) == 3
    best = max(trials, key=lambda t: t["ndcg"])
    chosen = result.manifest["params"]
    assert chosen["als"]["factors"] == best["factors"]
    assert chosen["als"]["regularization"] == best["regularization"]
    assert chosen["weights"]["confidence"] == best["confidence"]


def test_index_below_recall_floor_is_not_published(world: dict[str, Path], tmp_path: Path) -> None:
    good = run(
        world["interactions"], tmp_path, QUIET, catalog=world["catalog"], echo=lambda _: None
    )
    # Force HNSW with a tiny search beam and an impossible floor.
    bad = replace(QUIET, index=IndexConfig(exact_max_items=10, ef_search=1, recall_floor=1.01))
    with pytest.raises(TrainError, match="below the floor"):
        run(world["interactions"], tmp_path, bad, catalog=world["catalog"], echo=lambda _: None)
    assert b.current_version(tmp_path) == good.version
    assert [m["version"] for m in b.list_versions(tmp_path)] == [good.version]


def test_hnsw_index_above_threshold_clears_the_floor(
    world: dict[str, Path], tmp_path: Path
) -> None:
    cfg = replace(QUIET, index=IndexConfig(exact_max_items=100))
    result = run(
        world["interactions"], tmp_path, cfg, catalog=world["catalog"], echo=lambda _: None
    )
    info = result.manifest["index"]
    assert info["kind"] == "hnsw"
    assert info["recall"] >= 0.95


def test_no_refit_publishes_the_evaluated_model(world: dict[str, Path], tmp_path: Path) -> None:
    cfg = replace(QUIET, refit=False, split="random")
    result = run(
        world["interactions"], tmp_path, cfg, catalog=world["catalog"], echo=lambda _: None
    )
    loaded = b.load_bundle(result.path)
    assert result.manifest["params"]["refit_on_all_data"] is False
    # The published matrix is the training part only: fewer entries than all interactions.
    full = pl.read_parquet(world["interactions"]).select("customer_id", "product_id").unique()
    assert loaded.user_items.nnz < full.height


def test_evaluate_command_scores_a_bundle_on_held_out_rows(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pl.read_parquet(world["interactions"]).sort("timestamp")
    cut = int(frame.height * 0.8)
    frame.head(cut).write_parquet(tmp_path / "train.parquet")
    frame.tail(frame.height - cut).write_parquet(tmp_path / "test.parquet")
    models = tmp_path / "models"
    args = ["--model-dir", str(models)]
    assert (
        main(
            [
                "train",
                "--interactions",
                str(tmp_path / "train.parquet"),
                "--catalog",
                str(world["catalog"]),
                "--quiet",
                "--baselines",
                "popularity",
                "--cold-start-fraction",
                "0",
                *args,
            ]
        )
        == 0
    )
    capsys.readouterr()
    code = main(["evaluate", "--interactions", str(tmp_path / "test.parquet"), *args])
    out = capsys.readouterr().out
    assert code == 0
    assert "ndcg@20" in out and "recall@20" in out
    rows = {
        line.split()[0]: line.split()[1:]
        for line in out.splitlines()
        if line[:4] in ("als ", "popu")
    }
    assert float(rows["als"][0]) > float(rows["popularity"][0])


def test_synthetic_world_is_learnable_from_parquet_and_csv_alike(tmp_path: Path) -> None:
    world = synth.generate(synth.SynthConfig(customers=300, products=60, seed=1))
    paths = synth.write_world(world, tmp_path, "csv")
    result = run(
        paths["interactions"], tmp_path / "m", QUIET, catalog=paths["catalog"], echo=lambda _: None
    )
    assert result.manifest["counts"]["interactions"] == world.interactions.height
    assert np.isfinite(result.manifest["evaluation"]["models"]["als"]["ndcg@20"])

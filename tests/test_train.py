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
from training.evaluation import Choice, baseline_warning, choose_serving
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


def test_evaluation_chooses_what_serves_and_the_bundle_holds_it(
    world: dict[str, Path], tmp_path: Path
) -> None:
    lines: list[str] = []
    result = run(
        world["interactions"], tmp_path, QUIET, catalog=world["catalog"], echo=lines.append
    )
    m = result.manifest
    metrics = m["evaluation"]["models"]
    servable = {"als", "item2item", "blend"}
    assert servable <= set(metrics)
    best = max(servable, key=lambda name: metrics[name]["ndcg@20"])
    assert m["model"] == m["serving"]["recommend"] == best
    assert m["serving"]["similar"] in ("als", "item2item", "item2vec")
    assert m["serving"]["session"] in ("als", "item2item", "item2vec")
    assert set(m["evaluation"]["sessions"]) == {"als", "item2item", "item2vec"}
    assert m["params"]["item2item"]["kind"] == "ease"  # 300 products
    # The item-to-item model's own search ran on validation, with no decay among the candidates.
    decays = {t["decay"] for t in m["tuning_item2item"]}
    assert 0.0 in decays and len(decays) > 1
    assert m["params"]["item2item"]["decay"] in decays
    loaded = b.load_bundle(result.path)
    assert "sequence" in loaded.extras
    assert len(loaded.extras["sequence"]["rank"]) == loaded.user_items.nnz
    uses = {best, m["serving"]["similar"], m["serving"]["session"]}
    assert ("item2item" in loaded.extras) == bool(uses & {"item2item", "blend"})
    assert ("item2vec" in loaded.extras) == ("item2vec" in uses)
    assert any("(served)" in line for line in lines)


def test_above_its_interaction_limit_the_item_to_item_model_is_not_fitted(
    world: dict[str, Path], tmp_path: Path
) -> None:
    lines: list[str] = []
    small = replace(QUIET.item2item, max_interactions=1_000)
    result = run(
        world["interactions"],
        tmp_path / "m",
        replace(QUIET, item2item=small, use_item2vec=False),
        catalog=world["catalog"],
        echo=lines.append,
    )
    assert result.manifest["serving"]["recommend"] == "als"
    assert "item2item" not in b.load_bundle(result.path).extras
    assert "item2item" not in result.manifest["evaluation"]["models"]
    assert any("item-to-item model not fitted" in line for line in lines)


def test_serve_and_no_item2item_override_the_choice(world: dict[str, Path], tmp_path: Path) -> None:
    forced = run(
        world["interactions"],
        tmp_path / "a",
        replace(QUIET, serve="item2item", serve_similar="item2item"),
        catalog=world["catalog"],
        echo=lambda _: None,
    )
    assert forced.manifest["serving"]["recommend"] == "item2item"
    assert forced.manifest["serving"]["similar"] == "item2item"
    assert "item2item" in b.load_bundle(forced.path).extras
    alone = run(
        world["interactions"],
        tmp_path / "b",
        replace(QUIET, use_item2item=False, use_item2vec=False),
        catalog=world["catalog"],
        echo=lambda _: None,
    )
    assert alone.manifest["serving"] == {"recommend": "als", "similar": "als", "session": "als"}
    assert set(b.load_bundle(alone.path).extras) == {"sequence", "catalog", "content"}
    with pytest.raises(TrainError, match="cannot serve"):
        run(
            world["interactions"],
            tmp_path / "c",
            replace(QUIET, use_item2item=False, serve="blend"),
            catalog=world["catalog"],
            echo=lambda _: None,
        )


def test_a_winning_baseline_is_flagged_loudly() -> None:
    metrics = {
        "als": {"ndcg@20": 0.20},
        "item2item": {"ndcg@20": 0.22},
        "blend": {"ndcg@20": 0.21},
        "popularity": {"ndcg@20": 0.05},
        "itemknn": {"ndcg@20": 0.25},
    }
    choice = choose_serving(metrics, {"blend": 0.3}, 20)
    assert choice.model == "item2item" and choice.winner_baseline == "itemknn"
    banner = baseline_warning(choice, metrics, 20)
    assert banner is not None and banner.startswith("!!!")
    assert "WARNING" in banner and "'itemknn'" in banner and "'item2item'" in banner
    metrics["itemknn"]["ndcg@20"] = 0.1
    fine = choose_serving(metrics, {"blend": 0.3}, 20)
    assert fine.winner_baseline is None and baseline_warning(fine, metrics, 20) is None
    assert choose_serving(metrics, {"blend": 0.3}, 20, "blend") == Choice("blend", 0.3, None)


def test_tune_keeps_no_sequence_decay_among_the_candidates(
    world: dict[str, Path], tmp_path: Path
) -> None:
    cfg = replace(QUIET, tune=True, tune_trials=8, use_item2item=False)
    result = run(
        world["interactions"], tmp_path, cfg, catalog=world["catalog"], echo=lambda _: None
    )
    decays = [t["sequence_decay"] for t in result.manifest["tuning"]]
    assert 0.0 in decays and max(decays) > 0
    best = max(result.manifest["tuning"], key=lambda t: t["ndcg"])
    assert result.manifest["params"]["weights"]["sequence_decay"] == best["sequence_decay"]


def test_data_split_writes_the_training_split_for_evaluate(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "split"
    assert (
        main(["data", "split", "--interactions", str(world["interactions"]), "--out", str(out)])
        == 0
    )
    train, test = pl.read_parquet(out / "train.parquet"), pl.read_parquet(out / "test.parquet")
    full = pl.read_parquet(world["interactions"])
    assert train.height + test.height == full.height
    # Per customer, every held-out row is at or after every training row.
    last_train = train.group_by("customer_id").agg(pl.col("timestamp").max().alias("a"))
    first_test = test.group_by("customer_id").agg(pl.col("timestamp").min().alias("b"))
    joined = last_train.join(first_test, on="customer_id")
    assert joined.height > 0 and (joined["a"] <= joined["b"]).all()
    assert test.height == pytest.approx(0.2 * full.height, rel=0.1)


def test_the_clv_check_samples_customers_above_its_limit(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.train as train_module

    frame = pl.read_parquet(world["interactions"])
    whole = train_module.clv_check(frame)
    assert whole is not None
    customers = whole[1]["customers"]
    monkeypatch.setattr(train_module, "CLV_CHECK_CUSTOMERS", customers // 2)
    sampled = train_module.clv_check(frame)
    assert sampled is not None
    # Whole histories of a sample: fewer customers, every one with their purchases.
    assert 0 < sampled[1]["customers"] < customers
    assert sampled[1]["actual_repeat_purchases"] < whole[1]["actual_repeat_purchases"]

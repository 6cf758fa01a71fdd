"""The publish gate: a model worse than the serving one is written but not published."""

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
from training.gate import GateConfig, GateResult
from training.models import ALSParams
from training.train import GateError, run

# ALS alone serves here (a weak ALS must be what would serve), without the cold-start fit.
QUIET = TrainConfig(
    progress=False,
    baselines=("popularity",),
    clv_check=False,
    use_item2item=False,
    use_item2vec=False,
    cold_start=ColdStartConfig(fraction=0.0),
)
WEAK = ALSParams(factors=2, iterations=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("gate-world")
    files = synth.write_world(synth.generate(synth.SynthConfig(customers=3000, products=300)), out)
    # The first 70% of the period: what an older serving model was trained on.
    frame = pl.read_parquet(files["interactions"])
    cut = frame["timestamp"].quantile(0.7)
    files["early"] = out / "early.parquet"
    frame.filter(pl.col("timestamp") <= cut).write_parquet(files["early"])
    return files


@pytest.fixture(scope="module")
def good(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory whose CURRENT is a good model of the whole world (copied per test)."""
    models = tmp_path_factory.mktemp("gate-good") / "models"
    run(world["interactions"], models, QUIET, catalog=world["catalog"], echo=lambda _: None)
    return models


def _copy(good: Path, tmp_path: Path) -> Path:
    models = tmp_path / "models"
    version = b.current_version(good)
    assert version is not None
    b.write_bundle(models, b.load_bundle(good / version), version)
    b.publish(models, version)
    return models


def _train_args(world: dict[str, Path], models: Path, *extra: str) -> list[str]:
    return [
        "train",
        *("--interactions", str(world["interactions"])),
        *("--catalog", str(world["catalog"])),
        *("--model-dir", str(models)),
        *("--baselines", "popularity", "--no-clv-check", "--quiet"),
        *("--no-item2item", "--no-item2vec", "--cold-start-fraction", "0"),
        *extra,
    ]


def test_a_weak_model_after_a_good_one_is_not_published_and_the_command_says_why(
    world: dict[str, Path], good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = _copy(good, tmp_path)
    serving = b.current_version(models)
    code = main(_train_args(world, models, "--factors", "2", "--iterations", "1"))
    err = capsys.readouterr().err
    assert code == 2
    assert b.current_version(models) == serving  # still the good one
    written = [v["version"] for v in b.list_versions(models) if v["version"] != serving]
    assert len(written) == 1  # the weak bundle is on disk, intact, for inspection
    weak = b.load_bundle(models / written[0])
    assert weak.manifest["gate"]["passed"] is False
    recorded = b.read_manifest(models / str(serving))["evaluation"]["models"]["als"]["ndcg@20"]
    new = weak.manifest["evaluation"]["models"]["als"]["ndcg@20"]
    assert new < recorded * 0.98
    # Both figures, and the two ways to publish anyway.
    assert f"{new:.4f} (new)" in err and f"{recorded:.4f} (serving model {serving})" in err
    assert "--force" in err and f"recsvc models promote {written[0]}" in err
    assert "tolerance" in err


def test_force_publishes_the_weak_model(
    world: dict[str, Path], good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = _copy(good, tmp_path)
    serving = b.current_version(models)
    code = main(_train_args(world, models, "--factors", "2", "--iterations", "1", "--force"))
    out = capsys.readouterr().out
    assert code == 0
    current = b.current_version(models)
    assert current != serving
    manifest = b.read_manifest(models / str(current))
    assert manifest["params"]["als"]["factors"] == 2
    assert manifest["gate"]["passed"] is False and manifest["gate"]["forced"] is True
    assert "publish gate FAILED" in out and "forced past the gate" in out


def test_a_model_as_good_as_the_serving_one_is_published(
    world: dict[str, Path], good: Path, tmp_path: Path
) -> None:
    models = _copy(good, tmp_path)
    result = run(
        world["interactions"], models, QUIET, catalog=world["catalog"], echo=lambda _: None
    )
    assert b.current_version(models) == result.version
    gate = result.manifest["gate"]
    assert gate["passed"] and gate["serving"] == pytest.approx(gate["new"])
    assert "same split" in gate["basis"]


def test_on_newer_data_the_serving_model_is_scored_on_what_it_never_saw(
    world: dict[str, Path], tmp_path: Path
) -> None:
    """The serving model was trained on the first 70% of the period; the new run has it all:
    the serving bundle is scored on held-out interactions later than its data."""
    models = tmp_path / "models"
    first = run(world["early"], models, QUIET, catalog=world["catalog"], echo=lambda _: None)
    lines: list[str] = []
    with pytest.raises(GateError) as info:
        run(
            world["interactions"],
            models,
            replace(QUIET, als=WEAK),
            catalog=world["catalog"],
            echo=lines.append,
        )
    gate = info.value.gate
    assert b.current_version(models) == first.version
    assert gate.serving_version == first.version and "later than its training data" in gate.basis
    assert gate.serving is not None and gate.new < gate.serving * 0.98
    assert gate.popularity is not None and gate.customers >= 100
    assert any(line.startswith("publish gate FAILED") for line in lines)
    # A good model on the newer data beats the older serving one there.
    better = run(
        world["interactions"], models, QUIET, catalog=world["catalog"], echo=lambda _: None
    )
    assert b.current_version(models) == better.version
    assert better.manifest["gate"]["passed"]
    assert better.manifest["gate"]["new"] >= better.manifest["gate"]["serving"] * 0.98


def test_the_gate_says_why_when_it_cannot_compare(world: dict[str, Path], tmp_path: Path) -> None:
    models = tmp_path / "models"
    first = run(world["interactions"], models, QUIET, catalog=world["catalog"], echo=lambda _: None)
    assert first.manifest["gate"]["basis"] == "no model is serving yet"
    # The serving model's data covers everything: no later held-out interaction to score it
    # on, and other evaluation settings mean its recorded figure is of another split.
    second = run(
        world["interactions"],
        models,
        replace(QUIET, seed=5, split="random", als=WEAK),
        catalog=world["catalog"],
        echo=lambda _: None,
    )
    assert b.current_version(models) == second.version
    gate = second.manifest["gate"]
    assert gate["serving"] is None and "later than the serving model's data" in gate["basis"]


def test_tolerance_is_relative() -> None:
    at = GateResult("ndcg@20", 0.098, "v1", 0.1, 0.05, "x", 100, 0.02)
    below = replace(at, new=0.0979)
    assert at.passed and not below.passed
    assert GateResult("ndcg@20", 0.0, tolerance=0.02).passed  # nothing to compare with
    assert replace(at, tolerance=0.0, new=0.1).passed
    assert GateConfig().tolerance == 0.02


def test_models_compare_prints_both_side_by_side(
    world: dict[str, Path], good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = _copy(good, tmp_path)
    serving = str(b.current_version(models))
    weak = run(
        world["interactions"],
        models,
        replace(QUIET, als=WEAK, gate=GateConfig(force=True)),
        catalog=world["catalog"],
        echo=lambda _: None,
    )
    # Both trained on everything: held out are purchases of random products (some of which a
    # bundle saw in training: those rows are left out of both scores).
    rng = np.random.default_rng(0)
    loaded = b.load_bundle(models / serving)
    customers = loaded.customer_ids.to_list()[:500]
    products = loaded.products["product_id"].to_list()
    held = tmp_path / "held.csv"
    rows = [
        f"{c},{products[int(rng.integers(len(products)))]},2026-01-01T00:00:00,purchase,1,1"
        for c in customers
    ]
    held.write_text(
        "customer_id,product_id,timestamp,event_type,quantity,amount\n" + "\n".join(rows) + "\n"
    )
    code = main(
        [
            *("models", "compare", serving, weak.version),
            *("--interactions", str(held), "--model-dir", str(models)),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    assert serving in header and weak.version in header
    ndcg = next(line for line in lines if line.startswith("ndcg@20"))
    assert ndcg.split()[-1].endswith("%")
    assert any(line.startswith("popularity ndcg@20") for line in lines)

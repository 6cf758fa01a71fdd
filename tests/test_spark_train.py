# mypy: disable-error-code="no-untyped-call"
"""`recsvc train --engine spark`: Spark MLlib's ALS in local mode and on a standalone cluster
(master and two workers on loopback), publishing bundles the server cannot tell apart."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from grpc_helpers import serve_config
from spark_fixtures import FAST, Standalone

from formats.bundle import load_bundle, resolve
from recsvc.cli import main
from recsvc.client import Client
from recsvc.server import start
from training.config import TrainConfig
from training.engines import implicit_engine
from training.models import ALSParams
from training.spark import SparkError, SparkSettings, parse_conf, spark_engine, spark_session
from training.train import run

SMALL = ALSParams(factors=8, iterations=3)
# Short-lived test JVMs: the C1 compiler alone starts Spark's jobs sooner on a busy machine.
QUICK_JVM = "-XX:TieredStopAtLevel=1"
LOCAL = SparkSettings(
    master="local[2]", progress=False, conf={"spark.driver.extraJavaOptions": QUICK_JVM}
)
QUIET = TrainConfig(
    progress=False, baselines=("popularity",), clv_check=False, als=SMALL, tune_trials=2
)


def manifest(model_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((resolve(model_dir) / "manifest.json").read_text())
    return loaded


def served(model_dir: Path) -> tuple[str, int]:
    """RecommendProducts from ``model_dir`` through the real server: (version, items)."""
    running = start(serve_config(model_dir))
    try:
        with Client(f"127.0.0.1:{running.port}", token="rec-token") as client:
            rec = client.recommend("C0000001", limit=5)
        return rec.model_version, len(rec.items)
    finally:
        running.stop(grace=0)


def test_spark_and_implicit_share_inputs_weights_counts_and_bundle_format(
    small_world: dict[str, Path], tmp_path: Path
) -> None:
    inputs = (small_world["interactions"], small_world["catalog"], small_world["customers"])
    cfg = replace(QUIET, tune=True, refit=False)  # a Spark refit is one more full fit
    implicit = run(inputs[0], tmp_path / "implicit", cfg, *inputs[1:], echo=lambda _: None)
    with spark_session(LOCAL) as session:
        spark = run(
            inputs[0],
            tmp_path / "spark",
            cfg,
            *inputs[1:],
            echo=lambda _: None,
            engine=spark_engine(session),
        )
    a, b = implicit.manifest, spark.manifest
    assert (a["engine"], b["engine"]) == ("implicit", "spark")
    assert b["engine_info"]["master"] == "local[2]" and b["engine_info"]["blocks"] == 2
    # One reader, one validation, one weighting: the same counts and the same matrix.
    assert a["input"] == b["input"] and a["counts"] == b["counts"]
    ba, bb = load_bundle(implicit.path), load_bundle(spark.path)
    assert len(b["tuning"]) == 2 and b["params"]["tuned"]
    assert ba.user_factors.shape == bb.user_factors.shape == (a["counts"]["customers"], 8)
    assert ba.item_factors.shape == bb.item_factors.shape
    assert bb.customer_ids.to_list() == ba.customer_ids.to_list()
    assert np.isfinite(bb.user_factors).all() and np.abs(bb.item_factors).sum() > 0
    # Spark learned something: its held-out ranking beats popularity's.
    metrics = b["evaluation"]["models"]
    assert metrics["als"]["hitrate@20"] > metrics["popularity"]["hitrate@20"] * 0.9
    assert served(tmp_path / "spark") == (spark.version, 5)


def test_same_weights_give_spark_the_same_confidence_matrix(
    small_world: dict[str, Path], tmp_path: Path
) -> None:
    """The bundle stores the matrix the factors were fit on: with one WeightConfig both
    engines were handed exactly the same entries."""
    cfg = replace(QUIET, refit=False)
    run(small_world["interactions"], tmp_path / "i", cfg, echo=lambda _: None)
    with spark_session(replace(LOCAL, master="local[1]")) as session:
        engine = spark_engine(session)
        run(small_world["interactions"], tmp_path / "s", cfg, echo=lambda _: None, engine=engine)
    mi, ms = load_bundle(resolve(tmp_path / "i")), load_bundle(resolve(tmp_path / "s"))
    assert (mi.user_items != ms.user_items).nnz == 0
    assert implicit_engine().name == "implicit" and engine.warm_starts is False


def test_trains_on_a_standalone_cluster_and_serves(
    standalone: Standalone, small_world: dict[str, Path], tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    code = main(
        [
            "train",
            "--engine", "spark",
            "--spark-master", standalone.url,
            "--spark-conf", "spark.executor.memory=512m",
            "--spark-conf", "spark.cores.max=2",
            # Schedule only once both executors have registered: on a busy machine the job
            # could otherwise finish on the first before the second starts.
            "--spark-conf", "spark.scheduler.minRegisteredResourcesRatio=1.0",
            "--spark-conf", "spark.scheduler.maxRegisteredResourcesWaitingTime=120s",
            "--spark-conf", f"spark.driver.extraJavaOptions={QUICK_JVM}",
            "--spark-conf", f"spark.executor.extraJavaOptions={QUICK_JVM}",
            "--interactions", str(small_world["interactions"]),
            "--catalog", str(small_world["catalog"]),
            "--model-dir", str(model_dir),
            "--quiet",
            "--no-refit",  # one fit is enough to prove the executors did it
            *FAST,
        ]
    )  # fmt: skip
    assert code == 0, standalone.logs()
    m = manifest(model_dir)
    assert m["engine"] == "spark" and m["engine_info"]["master"] == standalone.url
    # One core on each worker: 2 once both executors have registered (on a loaded machine the
    # job may start before the second one has, so the figure recorded can be lower).
    assert 1 <= m["engine_info"]["default_parallelism"] <= 2
    # The executors really ran on the workers: each launched one.
    assert all(any((standalone.work_dir / f"work-{i}").rglob("stderr")) for i in range(2))
    assert served(model_dir) == (m["version"], 5)


def test_bad_spark_settings_are_clear_errors() -> None:
    with pytest.raises(SparkError, match="--spark-master 'mesos://x'"):
        SparkSettings(master="mesos://x").check()
    with pytest.raises(SparkError, match=r"spark\.KEY=VALUE"):
        parse_conf(["executor.memory=4g"])
    assert parse_conf(["spark.executor.memory = 4g"]) == {"spark.executor.memory": "4g"}
    local = SparkSettings(master="local[3]", conf={"spark.driver.memory": "2g"}).resolved()
    assert local["spark.driver.memory"] == "2g" and local["spark.sql.shuffle.partitions"] == "3"
    assert local["spark.driver.bindAddress"] == "127.0.0.1"
    remote = SparkSettings(master="spark://spark.example:7077").resolved()
    assert "spark.driver.bindAddress" not in remote and "spark.driver.memory" not in remote


def test_cli_rejects_a_bad_master_before_reading(tmp_path: Path, capsys: Any) -> None:
    code = main(
        ["train", "--engine", "spark", "--spark-master", "nowhere", "--interactions",
         str(tmp_path / "missing.csv"), "--model-dir", str(tmp_path / "m")]
    )  # fmt: skip
    assert code == 2
    assert "--spark-master 'nowhere'" in capsys.readouterr().err

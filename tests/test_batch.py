# mypy: disable-error-code="no-untyped-call"
"""Batch recommendations and audiences: the same answers as the server, from the same bundle.

The generated stubs are unannotated, hence the mypy line above.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import numpy as np
import polars as pl
import pytest
from grpc_helpers import REC, serve_config
from serving_fixtures import add_copy, trained

from formats import bundle as b
from formats.attribution import parse
from formats.types import Filter
from recsvc.batch import audience, recommend_batch, recommend_chunk
from recsvc.batch.vectorised import Vectorised
from recsvc.cli import main
from recsvc.convert import filter_to_pb
from recsvc.engine import Engine, EngineConfig
from recsvc.server import start
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc

V1 = "20260101T000000Z-first"
TEXT = ["customer_id", "rank", "product_id", "reason", "category", "personalized"]
FILTERS = {
    "none": Filter(),
    "stock and price": Filter(in_stock_only=True, min_price=1.0, max_price=6.0),
    "exclusions": Filter(
        exclude_categories=frozenset({"books"}),
        exclude_product_ids=frozenset({"P000001", "P000002", "P000003"}),
    ),
    "purchased too": Filter(include_purchased=True),
    "one category (scored exactly)": Filter(include_categories=frozenset({"coffee"})),
    "per category cap": Filter(max_per_category=2),
}


@pytest.fixture(scope="module", params=["exact", "hnsw"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    # Repeat categories: their products stay recommendable after a purchase.
    config = EngineConfig(repeat_categories=frozenset({"snacks"}), fold_in=False)
    return Engine.load(trained(tmp_path_factory, request.param), config)


@pytest.mark.parametrize("name", list(FILTERS))
def test_the_vectorised_answers_are_the_engines(engine: Engine, name: str) -> None:
    customers = [*engine.bundle.customer_ids.to_list()[:200], "NEW-1", "NEW-2"]
    filter = FILTERS[name]
    fast = recommend_chunk(engine, customers, 12, filter, Vectorised(engine, 12, filter))
    one_by_one = recommend_chunk(engine, customers, 12, filter)
    assert fast.select(TEXT).equals(one_by_one.select(TEXT))
    assert np.allclose(fast["score"].to_numpy(), one_by_one["score"].to_numpy(), atol=1e-5)
    assert fast["customer_id"].unique(maintain_order=True).to_list() == customers
    ids = fast.group_by("customer_id").agg(pl.col("recommendation_id").n_unique())
    assert ids["recommendation_id"].max() == 1  # one id per customer's list
    assert parse(fast["recommendation_id"][0]).source == "rb"


def test_the_vectorised_path_answers_most_customers_itself(engine: Engine) -> None:
    known = engine.bundle.customer_ids.to_numpy()
    rows = np.arange(len(known))
    block = Vectorised(engine, 20, Filter()).block(rows)
    assert block.ok.mean() > 0.9
    assert not Vectorised(engine, 20, Filter(max_per_category=2)).applies


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("batch") / "models"
    add_copy(models, trained(tmp_path_factory, "hnsw"), V1, publish=True)
    return models


def test_batch_output_equals_the_served_lists(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    known = b.load_bundle(model_dir / V1).customer_ids.to_list()
    rng = np.random.default_rng(5)
    sample = [known[i] for i in rng.choice(len(known), size=60, replace=False)] + ["NEW-9"]
    listed = tmp_path / "customers.csv"
    listed.write_text("customer_id\n" + "\n".join(sample) + "\n")
    out = tmp_path / "recs.parquet"
    filter = Filter(in_stock_only=True, max_price=8.0, exclude_categories=frozenset({"books"}))
    args = [
        *("recommend-batch", "--customers", str(listed), "--limit", "15", "--out", str(out)),
        *("--model-dir", str(model_dir), "--in-stock", "--max-price", "8"),
        *("--exclude-category", "books", "--workers", "1", "--quiet"),
    ]
    assert main(args) == 0
    assert "61 customers (60 personalized)" in capsys.readouterr().out
    batch = pl.read_parquet(out)
    running = start(serve_config(model_dir))  # no feature store: the bundle alone
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        stub = pb_grpc.RecommenderStub(channel)
        for customer in sample:
            served = stub.RecommendProducts(
                pb.RecommendProductsRequest(
                    customer_id=customer, limit=15, filter=filter_to_pb(filter)
                ),
                metadata=REC,
                timeout=10,
            )
            mine = batch.filter(pl.col("customer_id") == customer).sort("rank")
            assert mine["product_id"].to_list() == [i.product_id for i in served.items]
            assert mine["reason"].to_list() == [i.reason for i in served.items]
            assert mine["category"].to_list() == [i.category for i in served.items]
            assert np.allclose(mine["score"].to_numpy(), [i.score for i in served.items], atol=1e-5)
            assert mine["personalized"].to_list() == [served.personalized] * len(served.items)
    finally:
        channel.close()
        running.stop(grace=1.0)


def test_workers_and_chunks_keep_the_order(
    model_dir: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    import recsvc.batch.recommend as batch_module

    engine = Engine.load(model_dir / V1, EngineConfig(fold_in=False))
    customers = engine.bundle.customer_ids.to_list()
    monkeypatch.setattr(batch_module, "CHUNK", 300)  # several chunks, several processes
    done: list[int] = []
    one = recommend_batch(engine, customers, 10, Filter(), tmp_path / "one.parquet", 1)
    two = recommend_batch(engine, customers, 10, Filter(), tmp_path / "two.parquet", 2, done.append)
    assert sum(done) == len(customers) == one.customers == two.customers
    assert one.rows == two.rows == 10 * len(customers)
    first, second = pl.read_parquet(one.path), pl.read_parquet(two.path)
    assert first.select(TEXT).equals(second.select(TEXT))
    assert first["customer_id"].unique(maintain_order=True).to_list() == customers
    assert not list(tmp_path.glob(".*"))  # the part files are gone


def test_a_bad_customers_file_is_refused_with_its_lines(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = tmp_path / "customers.csv"
    listed.write_text("customer_id\nC1\n   \n" + "x" * 200 + "\n")
    out = tmp_path / "recs.parquet"
    args = ["recommend-batch", "--customers", str(listed), "--out", str(out)]
    assert main([*args, "--model-dir", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert f"{listed}, line 3: customer_id is empty" in err
    assert f"{listed}, line 4: customer_id is 200 characters long" in err
    assert not out.exists()
    bad_limit = ["recommend-batch", "--all", "--limit", "500", "--out", str(out)]
    assert main([*bad_limit, "--model-dir", str(model_dir)]) == 2
    assert "limit 500 is out of range" in capsys.readouterr().err


def test_audience_is_the_customers_with_the_highest_affinity(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = Engine.load(model_dir / V1, EngineConfig(fold_in=False))
    product = engine.catalog.product_ids[5]
    found = audience(engine, product, 50)
    assert found.height == 50 and found["rank"].to_list() == list(range(1, 51))
    scores = found["score"].to_numpy()
    assert np.all(np.diff(scores) <= 0)
    # Brute force: every customer's score; those who had the product are left out.
    idx = engine.catalog.product_index[product]
    all_scores = engine.user_factors @ engine.catalog.vectors(idx)
    had = set(np.flatnonzero(np.asarray(engine.user_items[:, idx].todense()).ravel()).tolist())
    ids = engine.bundle.customer_ids.to_list()
    ranked = sorted(
        (i for i in range(len(ids)) if i not in had), key=lambda i: -float(all_scores[i])
    )
    assert found["customer_id"].to_list() == [ids[i] for i in ranked[:50]]
    everyone = audience(engine, product, 50, include_purchased=True)
    assert everyone["score"][0] >= found["score"][0]
    out = tmp_path / "audience.csv"
    args = ["audience", "--product", product, "--top", "20", "--out", str(out)]
    assert main([*args, "--model-dir", str(model_dir)]) == 0
    assert pl.read_csv(out)["customer_id"].to_list() == found["customer_id"].to_list()[:20]
    capsys.readouterr()
    assert (
        main(["audience", "--product", "NOPE", "--out", str(out), "--model-dir", str(model_dir)])
        == 2
    )
    assert "'NOPE' is not in the catalog" in capsys.readouterr().err

# mypy: disable-error-code="no-untyped-call"
"""Products created live through UpdateProducts: in the engine, through the feature store's
change sequence into every worker, over gRPC, in a 2-worker `recsvc serve`, after a restart,
and in `recsvc features show --product`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_helpers import ADMIN, REC, clean_env, recsvc, rpc_error
from redis_fixtures import new_namespace, start_server
from serving_fixtures import add_copy, free_port, trained

from feature_store.embedded import EmbeddedRedis
from feature_store.store import FeatureStore
from formats import bundle as b
from formats.types import AttributeCondition, Filter, ProductChange
from recsvc.engine import Engine, EngineConfig
from recsvc.realtime import Realtime
from recsvc.server import Running
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc

VERSION = "20260101T000000Z-live"
NEW_CATEGORY = "brand-new-category"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> b.Bundle:
    return b.load_bundle(trained(tmp_path_factory, "exact"))


def customer_of(engine: Engine) -> str:
    sizes = np.diff(engine.user_items.indptr)
    row = next(r for r in range(len(sizes)) if sizes[r] >= 3 and engine.user_factors[r].any())
    return str(engine.bundle.customer_ids[row])


def like(engine: Engine, pid: str, index: int, **fields: Any) -> ProductChange:
    """A new product described like trained product ``index``."""
    values: dict[str, Any] = {
        "title": engine.catalog.titles[index],
        "category": engine.catalog.category_of(index),
        "attributes": {"brand": str(engine.bundle.products["brand"][index])},
    }
    values.update(fields)
    return ProductChange(pid, **values)


# -- the engine -------------------------------------------------------------------------------


def test_a_created_product_is_served_everywhere_with_its_content_vector(bundle: b.Bundle) -> None:
    engine = Engine(bundle, EngineConfig(exploration_share=0.0))
    customer = customer_of(engine)
    n = engine.catalog.n_items
    change = like(engine, "NEW1", 3, stock=4, price=2.5)
    assert engine.apply_changes(7, [change]) == 1
    cat = engine.catalog
    assert cat.change_seq == 7 and cat.n_items == n + 1 and cat.product_index["NEW1"] == n
    assert engine.content is not None
    expected = engine.content.predict_one(
        change.title or "", change.category or "", change.attributes
    )
    assert np.allclose(cat.vectors(n), expected) and np.any(expected)
    # SimilarProducts with it as the query, and as a result of a similar product's query.
    similar = engine.similar("NEW1", 10)
    assert {i.slot for i in similar.items} == {"content"} and all(i.score for i in similar.items)
    near = similar.items[0].product_id
    assert "NEW1" in [i.product_id for i in engine.similar(near, 200).items]
    # RankProducts scores it like any product.
    ranked = engine.rank(customer, ["NEW1", cat.product_ids[0]])
    assert {i.product_id for i in ranked.items} == {"NEW1", cat.product_ids[0]}
    assert next(i for i in ranked.items if i.product_id == "NEW1").score != 0
    # RecommendProducts with a category filter; filters on its stock, price and attributes.
    in_category = Filter(include_categories=frozenset({change.category or ""}))
    assert "NEW1" in [i.product_id for i in engine.recommend(customer, 200, in_category).items]
    brand = AttributeCondition("brand", equals=change.attributes["brand"])
    branded = engine.recommend(customer, 200, Filter(attributes=(brand,)))
    assert "NEW1" in [i.product_id for i in branded.items]
    assert "NEW1" not in [
        i.product_id for i in engine.recommend(customer, 200, Filter(max_price=2.0)).items
    ]
    assert engine.categories_of(["NEW1"]) == {"NEW1": change.category}


def test_new_categories_attributes_and_descriptions(bundle: b.Bundle) -> None:
    engine = Engine(bundle, EngineConfig(exploration_share=0.0))
    customer = customer_of(engine)
    cat = engine.catalog
    created = [
        like(engine, "NEW2", 5, category=NEW_CATEGORY, attributes={"colour": "teal"}),
        like(engine, "NEW3", 6, stock=0),
    ]
    engine.apply_changes(1, created)
    only_new = Filter(include_categories=frozenset({NEW_CATEGORY}))
    assert [i.product_id for i in engine.recommend(customer, 10, only_new).items] == ["NEW2"]
    assert [i.product_id for i in engine.recommend("C-unknown", 10, only_new).items] == ["NEW2"]
    teal = Filter(attributes=(AttributeCondition("colour", equals="teal"),))
    assert [i.product_id for i in engine.recommend(customer, 10, teal).items] == ["NEW2"]
    stocked = Filter(in_stock_only=True, include_categories=frozenset({cat.category_of(6)}))
    assert "NEW3" not in [i.product_id for i in engine.recommend(customer, 200, stocked).items]
    # A live product may change category (and so vector); a trained one keeps the model's.
    before = cat.vectors(cat.product_index["NEW2"]).copy()
    engine.apply_changes(2, [ProductChange("NEW2", category=cat.category_of(0), title="Other")])
    assert cat.category_of(cat.product_index["NEW2"]) == cat.category_of(0)
    assert not np.allclose(before, cat.vectors(cat.product_index["NEW2"]))
    assert engine.recommend(customer, 10, only_new).items == []
    trained_id = cat.product_ids[1]
    engine.apply_changes(3, [ProductChange(trained_id, title="Renamed", category="elsewhere")])
    assert cat.titles[1] == "Renamed" and cat.category_of(1) != "elsewhere"
    engine.apply_changes(4, [ProductChange(trained_id, attributes={"colour": "teal"})])
    assert {i.product_id for i in engine.recommend(customer, 10, teal).items} == {
        trained_id,
        "NEW2",
    }
    # Stock and price of products this model does not have are ignored, not errors.
    engine.apply_changes(5, [ProductChange("P-elsewhere", stock=3)])
    assert "P-elsewhere" not in cat.product_index and cat.change_seq == 5


def test_customers_events_on_live_products_shape_history_not_fold_in(bundle: b.Bundle) -> None:
    from feature_store.store import Activity, RecentEvent

    engine = Engine(bundle, EngineConfig(exploration_share=0.0))
    engine.apply_changes(1, [like(engine, "NEW4", 8)])
    late = int(engine.manifest["data"]["last_event_ms"]) + 1000
    activity = Activity(
        recent=(RecentEvent("purchase", "NEW4", late, 1.0),), purchased=frozenset({"NEW4"})
    )
    rec = engine.recommend("C-new-customer", 20, activity=activity)
    assert "NEW4" not in [i.product_id for i in rec.items]  # bought: never recommended back


# -- the feature store's change sequence: every worker, and after a restart --------------------


def test_every_worker_and_a_restarted_one_serve_a_created_product(
    bundle: b.Bundle, store: FeatureStore
) -> None:
    workers = [Engine(bundle, EngineConfig(exploration_share=0.0)) for _ in range(2)]
    realtimes = [Realtime(store) for _ in workers]
    change = like(workers[0], "NEW5", 10, price=9.0)
    assert realtimes[0].update_products(workers[0], [change]) == 1
    assert "NEW5" in workers[0].catalog.product_index  # the writer applied it at once
    customer = customer_of(workers[1])
    assert "NEW5" not in workers[1].catalog.product_index
    realtimes[1].activity(workers[1], customer)  # the other worker's next request
    assert "NEW5" in workers[1].catalog.product_index
    restarted = Engine(bundle, EngineConfig(exploration_share=0.0))
    Realtime(store).sync_catalog(restarted)
    idx = restarted.catalog.product_index["NEW5"]
    assert restarted.catalog.price[idx] == 9.0
    assert np.allclose(restarted.catalog.vectors(idx), workers[0].catalog.vectors(idx))
    # An update without a category on another worker finds the product created elsewhere.
    assert realtimes[1].update_products(workers[1], [ProductChange("NEW5", stock=0)]) == 1
    realtimes[0].sync_catalog(workers[0])
    assert not workers[0].catalog.in_stock[workers[0].catalog.product_index["NEW5"]]


# -- over gRPC ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, embedded_redis: EmbeddedRedis
) -> Iterator[Running]:
    models = tmp_path_factory.mktemp("live-products") / "models"
    add_copy(models, trained(tmp_path_factory, "exact"), VERSION, publish=True)
    running = start_server(models, embedded_redis.url, new_namespace())
    yield running
    running.stop(grace=0)


def test_update_products_creates_products_served_by_every_rpc(
    server: Running, rec_stub: Any, admin_stub: Any
) -> None:
    engine = server.store.engine
    customer = customer_of(engine)
    update = pb.ProductUpdate(
        product_id="LIVE1", title="Fresh thing", category=NEW_CATEGORY, price=3.0
    )
    update.attributes["brand"] = "Unheard-of brand"  # unknown values are accepted
    request = pb.UpdateProductsRequest(updates=[update])
    assert admin_stub.UpdateProducts(request, metadata=ADMIN, timeout=10).updated == 1
    similar = rec_stub.SimilarProducts(
        pb.SimilarProductsRequest(product_id="LIVE1", limit=5), metadata=REC, timeout=10
    )
    assert len(similar.items) == 5 and all(i.score != 0 for i in similar.items)
    assert {i.slot for i in similar.items} == {pb.SLOT_KIND_CONTENT}
    ranked = rec_stub.RankProducts(
        pb.RankProductsRequest(customer_id=customer, product_ids=["LIVE1", "P000001"]),
        metadata=REC,
        timeout=10,
    )
    assert {i.product_id for i in ranked.items} == {"LIVE1", "P000001"}
    assert all(i.reason != "not in the catalog" for i in ranked.items)
    recommended = rec_stub.RecommendProducts(
        pb.RecommendProductsRequest(
            customer_id=customer, limit=5, filter=pb.Filter(include_categories=[NEW_CATEGORY])
        ),
        metadata=REC,
        timeout=10,
    )
    assert [i.product_id for i in recommended.items] == ["LIVE1"]
    assert recommended.items[0].category == NEW_CATEGORY


def test_update_products_validation_over_grpc(admin_stub: Any) -> None:
    cases = [
        ([pb.ProductUpdate(product_id="X" * 129, category="c")], grpc.StatusCode.INVALID_ARGUMENT),
        (
            [pb.ProductUpdate(product_id="N9", category="c", price=-1)],
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            [pb.ProductUpdate(product_id="N9", category="c")] * 1001,
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        ([pb.ProductUpdate(product_id="N9", title="no category")], grpc.StatusCode.NOT_FOUND),
    ]
    for updates, expected in cases:
        request = pb.UpdateProductsRequest(updates=updates)
        code, details = rpc_error(
            partial(admin_stub.UpdateProducts, request, metadata=ADMIN, timeout=10)
        )
        assert code == expected, details
    code, details = rpc_error(
        partial(
            admin_stub.UpdateProducts,
            pb.UpdateProductsRequest(updates=[pb.ProductUpdate(product_id="N9", title="x")]),
            metadata=ADMIN,
            timeout=10,
        )
    )
    assert "send its category to create it" in details


# -- `recsvc serve` with two workers, a restart, and `recsvc features show` -----------------------


class Serve:
    """`recsvc serve --workers 2` on the model directory, its log in a file."""

    def __init__(self, model_dir: Path, tmp_path: Path, name: str) -> None:
        self.port = free_port()
        self.log = tmp_path / f"{name}.err"
        self._err = self.log.open("w")
        args = ["serve", "--model-dir", str(model_dir), "--port", str(self.port)]
        self.process = subprocess.Popen(
            recsvc(*args, "--workers", "2", "--metrics-port", "0"),
            env=clean_env(tmp_path, RECSVC_AUTH_TOKENS="all=recommend+admin"),
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        try:
            while self.log.read_text().count('"msg":"serving model') < 2:
                assert self.process.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, "the two workers never started"
                time.sleep(0.1)
        except AssertionError:
            self.stop()  # no test holds this server yet: nothing else would stop it
            raise

    def call(self, method: str, request: Any) -> Any:
        """On a new connection: the kernel spreads those over the workers."""
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            metadata = (("authorization", "Bearer all"),)
            stub: Any = (
                pb_grpc.AdminStub(channel)
                if method == "UpdateProducts"
                else pb_grpc.RecommenderStub(channel)
            )
            return getattr(stub, method)(request, metadata=metadata, timeout=20)

    def pids_answering(self, rpc: str, product_id: str) -> set[int]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        return {
            int(e["pid"])
            for e in lines
            if e.get("rpc") == rpc and e.get("product_id") == product_id and e.get("items")
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._err.close()


@pytest.mark.slow
def test_two_workers_serve_a_created_product_at_once_and_after_a_restart(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model_dir = tmp_path / "var" / "models"
    add_copy(model_dir, trained(tmp_path_factory, "exact"), VERSION, publish=True)
    customer = customer_of(Engine.load(model_dir / VERSION))
    similar = pb.SimilarProductsRequest(product_id="LIVE2", limit=5)
    ranked = pb.RankProductsRequest(customer_id=customer, product_ids=["LIVE2", "P000002"])
    in_category = pb.RecommendProductsRequest(
        customer_id=customer, limit=5, filter=pb.Filter(include_categories=[NEW_CATEGORY])
    )
    serve = Serve(model_dir, tmp_path, "first")
    try:
        update = pb.ProductUpdate(product_id="LIVE2", title="Brand new", category=NEW_CATEGORY)
        update.attributes["brand"] = "Newco"
        created = serve.call("UpdateProducts", pb.UpdateProductsRequest(updates=[update]))
        assert created.updated == 1
        # The next calls, on whichever worker they land, serve it (no waiting).
        for _ in range(16):
            assert len(serve.call("SimilarProducts", similar).items) == 5
            items = serve.call("RankProducts", ranked).items
            assert "not in the catalog" not in [i.reason for i in items]
            assert [i.product_id for i in serve.call("RecommendProducts", in_category).items] == [
                "LIVE2"
            ]
        assert len(serve.pids_answering("SimilarProducts", "LIVE2")) == 2  # both workers
    finally:
        serve.stop()
    again = Serve(model_dir, tmp_path, "restarted")
    try:
        assert len(again.call("SimilarProducts", similar).items) == 5
        assert [i.product_id for i in again.call("RecommendProducts", in_category).items] == [
            "LIVE2"
        ]
    finally:
        again.stop()
    shown = subprocess.run(
        recsvc("features", "show", "--model-dir", str(model_dir), "--product"),
        env=clean_env(tmp_path, RECSVC_AUTH_TOKENS="all=recommend+admin"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)
    assert listed["live_products"] == 1
    (product,) = listed["products"]
    assert product["product_id"] == "LIVE2" and product["category"] == NEW_CATEGORY
    assert product["attributes"] == {"brand": "Newco"} and product["created_at"]
    one = subprocess.run(
        recsvc("features", "show", "--model-dir", str(model_dir), "--product", "LIVE2"),
        env=clean_env(tmp_path, RECSVC_AUTH_TOKENS="all=recommend+admin"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(one.stdout)["live"]["title"] == "Brand new"

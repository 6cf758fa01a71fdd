# mypy: disable-error-code="no-untyped-call"
"""The gRPC server end to end: a real server on a free loopback port, real channels.

The generated stubs (recsvc.v1.*_pb2_grpc) are unannotated, hence the mypy line above.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import polars as pl
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_helpers import ADMIN, ALL, REC, rpc_error, sample, serve_config
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from serving_fixtures import add_copy, free_port, trained

from formats import bundle as b
from formats.types import Context, Filter, Recommendation
from recsvc.client import Client
from recsvc.config import ServeConfig
from recsvc.server import Running, start
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc

V1, V2, V3 = "20260101T000000Z-first", "20260102T000000Z-second", "20260103T000000Z-damaged"
RECOMMEND_METHOD = "recsvc.v1.Recommender/RecommendProducts"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("served") / "models"
    add_copy(models, trained(tmp_path_factory, "exact"), V1, publish=True)
    return models


@pytest.fixture(scope="module")
def known_customer(model_dir: Path) -> str:
    loaded = b.load_bundle(model_dir / V1)
    row = int(np.argmax(np.diff(loaded.user_items.indptr)))
    assert np.any(loaded.user_factors[row])
    return str(loaded.customer_ids[row])


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[Running]:
    running = start(serve_config(model_dir))
    yield running
    running.stop(grace=1.0)


@pytest.fixture
def start_server() -> Iterator[Callable[[ServeConfig], Running]]:
    """Start extra servers in a test; all are stopped at teardown."""
    started: list[Running] = []

    def run(config: ServeConfig) -> Running:
        running = start(config)
        started.append(running)
        return running

    yield run
    for running in started:
        running.stop(grace=1.0)


@pytest.fixture
def swap_dir(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """V1 published; V2 (another model) written but not published; V3 damaged."""
    models = tmp_path / "models"
    add_copy(models, trained(tmp_path_factory, "exact"), V1, publish=True)
    add_copy(models, trained(tmp_path_factory, "other"), V2)
    add_copy(models, trained(tmp_path_factory, "exact"), V3)
    factors = models / V3 / b.FACTORS
    data = bytearray(factors.read_bytes())
    data[len(data) // 2] ^= 0xFF
    factors.write_bytes(bytes(data))
    return models


class Load:
    """Client threads calling RecommendProducts in a loop, recording versions and failures."""

    def __init__(self, port: int, customer: str, threads: int = 4) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = pb_grpc.RecommenderStub(self.channel)
        self.customer = customer
        self.stopping = threading.Event()
        self.versions: list[list[str]] = [[] for _ in range(threads)]
        self.failures: list[str] = []
        self.threads = [
            threading.Thread(target=self._loop, args=(n,), daemon=True) for n in range(threads)
        ]

    def _loop(self, n: int) -> None:
        request = pb.RecommendProductsRequest(customer_id=self.customer, limit=10)
        while not self.stopping.is_set():
            try:
                reply = self.stub.RecommendProducts(request, metadata=REC, timeout=10)
            except grpc.RpcError as exc:
                self.failures.append(repr(exc))
                continue
            if len(reply.items) != 10:
                self.failures.append(f"{len(reply.items)} items from {reply.model_version}")
            self.versions[n].append(reply.model_version)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        self.wait_for_calls(5)
        return self

    def wait_for_calls(self, n: int, timeout: float = 10.0) -> None:
        """Until every thread has made ``n`` more calls."""
        targets = [len(v) + n for v in self.versions]
        deadline = time.monotonic() + timeout
        while any(len(v) < t for v, t in zip(self.versions, targets, strict=True)):
            assert time.monotonic() < deadline, "load threads stalled"
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=15)
        self.channel.close()
        # What they recorded is final only once they stopped.
        assert not any(t.is_alive() for t in self.threads), "load threads did not stop"


def wait_for_version(stub: Any, version: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=ADMIN).version != version:
        assert time.monotonic() < deadline, f"{version} not served after {timeout} s"
        time.sleep(0.05)


# -- every RPC ------------------------------------------------------------------------------


def test_every_rpc_answers(rec_stub: Any, admin_stub: Any, known_customer: str) -> None:
    rec = rec_stub.RecommendProducts(
        pb.RecommendProductsRequest(customer_id=known_customer, limit=7), metadata=REC, timeout=5
    )
    assert rec.personalized and rec.model_version == V1 and len(rec.items) == 7
    assert all(i.product_id and i.category and i.reason for i in rec.items)
    assert [i.score for i in rec.items] == sorted((i.score for i in rec.items), reverse=True)

    cold = rec_stub.RecommendProducts(
        pb.RecommendProductsRequest(customer_id="C-new"), metadata=REC, timeout=5
    )
    assert not cold.personalized and len(cold.items) == 20  # limit 0 means 20

    similar = rec_stub.SimilarProducts(
        pb.SimilarProductsRequest(product_id="P000094", limit=5), metadata=REC, timeout=5
    )
    assert len(similar.items) == 5 and "P000094" not in {i.product_id for i in similar.items}
    assert similar.model_version == V1 and similar.recommendation_id

    ranked = rec_stub.RankProducts(
        pb.RankProductsRequest(
            customer_id=known_customer, product_ids=["P000003", "nope", "P000001", "P000003"]
        ),
        metadata=REC,
        timeout=5,
    )
    ids = [i.product_id for i in ranked.items]
    assert sorted(ids[:2]) == ["P000001", "P000003"] and ids[2] == "nope"
    assert ranked.personalized and ranked.model_version == V1

    reload = admin_stub.ReloadModel(pb.ReloadModelRequest(), metadata=ADMIN, timeout=30)
    assert (reload.changed, reload.version) == (False, V1)


def test_filters_and_context_cross_the_wire(
    rec_stub: Any, known_customer: str, model_dir: Path
) -> None:
    request = pb.RecommendProductsRequest(
        customer_id=known_customer,
        limit=30,
        filter=pb.Filter(
            include_categories=["shoes", "electronics"],
            in_stock_only=True,
            min_price=0.0,  # set, so products without a price are out
            max_per_category=10,
        ),
        context=pb.Context(
            surface=pb.SURFACE_PRODUCT_PAGE, device="ios", current_product_id="P000016"
        ),
    )
    reply = rec_stub.RecommendProducts(request, metadata=REC, timeout=5)
    assert len(reply.items) == 20  # two categories, at most 10 each
    assert {i.category for i in reply.items} == {"shoes", "electronics"}
    assert "P000016" not in {i.product_id for i in reply.items}
    products = b.load_bundle(model_dir / V1).products
    unpriced = set(products.filter(pl.col("price").is_null())["product_id"].to_list())
    out_of_stock = set(products.filter(~pl.col("in_stock"))["product_id"].to_list())
    assert unpriced and out_of_stock
    assert not (unpriced | out_of_stock) & {i.product_id for i in reply.items}
    # An unset price bound is no bound: products without a price are allowed.
    everything = rec_stub.RecommendProducts(
        pb.RecommendProductsRequest(customer_id="C-new", limit=200), metadata=REC, timeout=5
    )
    assert unpriced <= {i.product_id for i in everything.items}
    assert len(everything.items) == 200


def test_session_products_cross_the_wire(rec_stub: Any, server: Running) -> None:
    session = ["P000005", "P000006", "P000007"]
    request = pb.RecommendProductsRequest(
        customer_id="C-visitor", limit=10, context=pb.Context(session_product_ids=session)
    )
    reply = rec_stub.RecommendProducts(request, metadata=REC, timeout=5)
    assert reply.personalized and len(reply.items) == 10
    assert not set(session) & {i.product_id for i in reply.items}
    code, details = rpc_error(
        lambda: rec_stub.RecommendProducts(
            pb.RecommendProductsRequest(
                customer_id="C-visitor",
                context=pb.Context(session_product_ids=[f"P{i}" for i in range(101)]),
            ),
            metadata=REC,
            timeout=5,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most 100" in details
    with Client(f"127.0.0.1:{server.port}", token="rec-token") as client:
        rec = client.recommend(
            "C-visitor", limit=5, context=Context(session_product_ids=tuple(session))
        )
        assert rec.personalized and len(rec.items) == 5


def test_python_client(server: Running, known_customer: str) -> None:
    target = f"127.0.0.1:{server.port}"
    with Client(target, token="rec-token") as client:
        rec = client.recommend(
            known_customer,
            limit=6,
            filter=Filter(exclude_categories=frozenset({"electronics"}), max_price=50.0),
        )
        assert rec.personalized and len(rec.items) == 6 and rec.model_version == V1
        assert "electronics" not in {i.category for i in rec.items}
        similar = client.similar("P000094", limit=4)
        assert len(similar.items) == 4
        ranked = client.rank(known_customer, ["P000002", "P000001"])
        assert {i.product_id for i in ranked.items} == {"P000001", "P000002"}
    with Client(target, token="admin-token") as admin:
        info = admin.model_info()
        assert info.version == V1 and info.products == 200
        assert admin.reload() == (False, V1)


def test_model_info(admin_stub: Any, model_dir: Path) -> None:
    info = admin_stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=ALL, timeout=5)
    manifest = b.read_manifest(model_dir / V1)
    assert info.version == V1
    assert info.created_at == manifest["created_at"]
    assert info.products == 200
    assert info.customers == manifest["counts"]["customers"] > 1000
    assert info.interactions == manifest["counts"]["interactions"] > 0
    assert set(info.metrics) == {"ndcg@20", "recall@20", "map@20", "hitrate@20", "coverage@20"}
    assert info.metrics["ndcg@20"] == pytest.approx(
        manifest["evaluation"]["models"]["als"]["ndcg@20"]
    )
    assert info.index_kind == "exact" and info.index_recall == 1.0
    assert info.loaded_at


def test_recommendation_ids_are_unique_per_response(rec_stub: Any, known_customer: str) -> None:
    ids = []
    for _ in range(10):
        for customer in (known_customer, "C-new"):
            ids.append(
                rec_stub.RecommendProducts(
                    pb.RecommendProductsRequest(customer_id=customer, limit=2), metadata=REC
                ).recommendation_id
            )
        ids.append(
            rec_stub.SimilarProducts(
                pb.SimilarProductsRequest(product_id="P000001", limit=2), metadata=REC
            ).recommendation_id
        )
        ids.append(
            rec_stub.RankProducts(
                pb.RankProductsRequest(customer_id=known_customer, product_ids=["P000001"]),
                metadata=REC,
            ).recommendation_id
        )
    assert len(set(ids)) == len(ids) == 40 and all(ids)


# -- status codes ---------------------------------------------------------------------------


def test_invalid_arguments_and_not_found(rec_stub: Any, known_customer: str) -> None:
    code, details = rpc_error(
        lambda: rec_stub.RecommendProducts(
            pb.RecommendProductsRequest(customer_id=""), metadata=REC, timeout=5
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "customer_id is empty" in details

    code, details = rpc_error(
        lambda: rec_stub.RecommendProducts(
            pb.RecommendProductsRequest(customer_id=known_customer, limit=500),
            metadata=REC,
            timeout=5,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit 500" in details and "1..200" in details

    code, details = rpc_error(
        lambda: rec_stub.RankProducts(
            pb.RankProductsRequest(
                customer_id=known_customer, product_ids=[f"P{n:06d}" for n in range(1001)]
            ),
            metadata=REC,
            timeout=5,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "1001" in details and "1000" in details

    code, details = rpc_error(
        lambda: rec_stub.SimilarProducts(
            pb.SimilarProductsRequest(product_id="P-missing"), metadata=REC, timeout=5
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND and "P-missing" in details and "catalog" in details

    code, details = rpc_error(
        lambda: rec_stub.SimilarProducts(
            pb.SimilarProductsRequest(product_id="P" * 129), metadata=REC, timeout=5
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "128" in details


# -- auth -----------------------------------------------------------------------------------


def test_auth_scopes(rec_stub: Any, admin_stub: Any, known_customer: str) -> None:
    request = pb.RecommendProductsRequest(customer_id=known_customer)

    def recommend(metadata: tuple[tuple[str, str], ...]) -> tuple[grpc.StatusCode, str]:
        return rpc_error(lambda: rec_stub.RecommendProducts(request, metadata=metadata, timeout=5))

    def info(metadata: tuple[tuple[str, str], ...]) -> tuple[grpc.StatusCode, str]:
        return rpc_error(
            lambda: admin_stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=metadata, timeout=5)
        )

    for call in (recommend, info):
        code, details = call(())
        assert code == grpc.StatusCode.UNAUTHENTICATED and "bearer token" in details
        for header in ("Bearer wrong-token", "Basic rec-token", "Bearer ", "rec-token"):
            code, _ = call((("authorization", header),))
            assert code == grpc.StatusCode.UNAUTHENTICATED, header

    code, details = recommend(ADMIN)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "'recommend'" in details
    code, details = info(REC)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "'admin'" in details
    code, _ = rpc_error(
        lambda: admin_stub.ReloadModel(pb.ReloadModelRequest(), metadata=REC, timeout=5)
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED

    # The scheme is case-insensitive; a token with both scopes may call both services.
    assert rec_stub.RecommendProducts(
        request, metadata=(("authorization", "bearer rec-token"),), timeout=5
    ).items
    assert rec_stub.RecommendProducts(request, metadata=ALL, timeout=5).items
    assert admin_stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=ALL, timeout=5).version


def test_health_is_open_and_serving(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "recsvc.v1.Recommender", "recsvc.v1.Admin"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
    # This server has no feature store: it cannot store events or answer privacy requests.
    for service in ("recsvc.v1.Events", "recsvc.v1.Privacy"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING, service
    code, _ = rpc_error(
        lambda: stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    )
    assert code == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {
        "recsvc.v1.Recommender",
        "recsvc.v1.Events",
        "recsvc.v1.Admin",
        "grpc.health.v1.Health",
    } <= services
    pool = DescriptorPool(database)
    recommender = pool.FindServiceByName("recsvc.v1.Recommender")
    assert {m.name for m in recommender.methods} == {
        "RecommendProducts",
        "SimilarProducts",
        "RankProducts",
        "RecommendOffers",
        "GetCustomerProfile",
        "TrendingProducts",
    }
    admin = pool.FindServiceByName("recsvc.v1.Admin")
    assert {m.name for m in admin.methods} == {
        "GetModelInfo",
        "ReloadModel",
        "UpdateProducts",
        "SetLoyalty",
        "ReloadOffers",
        "ReloadPromotions",
        "ReloadExperiments",
    }
    events = pool.FindServiceByName("recsvc.v1.Events")
    assert {m.name for m in events.methods} == {"TrackEvents"}


def test_client_deadline_is_honoured(
    model_dir: Path,
    known_customer: str,
    start_server: Callable[..., Running],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # gRPC rounds tiny deadlines up (a 1e-6 s or even 0 s timeout mostly succeeds against a
    # fast loopback server), so make the work itself slow: each RecommendProducts waits until
    # the test releases it. No timing is asserted: the order of events proves each point.
    running = start_server(serve_config(model_dir, threads=1))
    engine = running.store.engine
    real = engine.recommend
    computed: list[str] = []
    finished: list[str] = []
    release = threading.Event()

    def slow(customer_id: str, *args: Any, **kwargs: Any) -> Recommendation:
        computed.append(customer_id)
        assert release.wait(timeout=60), "the test never released the call"
        finished.append(customer_id)
        return real(customer_id, *args, **kwargs)

    def wait_for(what: list[str], n: int) -> None:
        deadline = time.monotonic() + 30
        while len(what) < n:
            assert time.monotonic() < deadline, f"only {what} after 30 s"
            time.sleep(0.01)

    monkeypatch.setattr(engine, "recommend", slow)
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        stub = pb_grpc.RecommenderStub(ch)

        def recommend(customer: str, timeout: float) -> Any:
            request = pb.RecommendProductsRequest(customer_id=customer, limit=3)
            return stub.RecommendProducts(request, metadata=REC, timeout=timeout)

        code, _ = rpc_error(lambda: recommend("C-slow-1", 0.2))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        # The client did not wait for the answer: the server has not given one yet.
        assert computed == ["C-slow-1"] and finished == []
        release.set()  # the single server thread finishes the abandoned call
        wait_for(finished, 1)
        release.clear()

        # A call whose deadline passes while it waits for a server thread is never computed.
        results: list[Any] = []
        first = threading.Thread(target=lambda: results.append(recommend("C-slow-2", 30)))
        first.start()
        wait_for(computed, 2)  # the server thread is busy with C-slow-2
        code, _ = rpc_error(lambda: recommend("C-queued", 0.2))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        release.set()
        first.join(timeout=30)
        assert len(results) == 1 and len(results[0].items) == 3

        monkeypatch.undo()  # the server keeps serving
        # One thread, calls in order: once this is answered the queued call was dealt with.
        assert len(recommend(known_customer, 5).items) == 3
        assert computed == ["C-slow-1", "C-slow-2"]


def test_rpc_metrics_by_method_and_code(rec_stub: Any, known_customer: str) -> None:
    name = "recsvc_rpc_duration_seconds_count"
    ok = {"method": RECOMMEND_METHOD, "code": "OK"}
    invalid = {"method": RECOMMEND_METHOD, "code": "INVALID_ARGUMENT"}
    denied = {"method": RECOMMEND_METHOD, "code": "UNAUTHENTICATED"}
    before = [sample(name, labels) for labels in (ok, invalid, denied)]
    for _ in range(3):
        rec_stub.RecommendProducts(
            pb.RecommendProductsRequest(customer_id=known_customer), metadata=REC, timeout=5
        )
    for customer in ("", " "):
        with pytest.raises(grpc.RpcError):
            rec_stub.RecommendProducts(
                pb.RecommendProductsRequest(customer_id=customer), metadata=REC, timeout=5
            )
    rpc_error(
        lambda: rec_stub.RecommendProducts(
            pb.RecommendProductsRequest(customer_id=known_customer), timeout=5
        )
    )
    after = [sample(name, labels) for labels in (ok, invalid, denied)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [3.0, 2.0, 1.0]
    assert sample("recsvc_rpc_duration_seconds_sum", ok) > 0


# -- TLS ------------------------------------------------------------------------------------


def test_tls(
    tmp_path: Path, model_dir: Path, known_customer: str, start_server: Callable[..., Running]
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    running = start_server(
        serve_config(model_dir, tls_cert=cert, tls_key=key, http_port=free_port())
    )
    target = f"localhost:{running.port}"
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(target, credentials) as secure:
        health = health_pb2_grpc.HealthStub(secure).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reply = pb_grpc.RecommenderStub(secure).RecommendProducts(
            pb.RecommendProductsRequest(customer_id=known_customer, limit=3),
            metadata=REC,
            timeout=10,
        )
        assert reply.personalized and len(reply.items) == 3
    with Client(target, token="admin-token", root_cert=cert.read_bytes()) as client:
        assert client.model_info().version == V1
    with grpc.insecure_channel(target) as plain:
        code, _ = rpc_error(
            lambda: health_pb2_grpc.HealthStub(plain).Check(
                health_pb2.HealthCheckRequest(), timeout=3
            )
        )
        assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    # The HTTP port speaks HTTPS with the same certificate.
    request = urllib.request.Request(
        f"https://localhost:{running.http_port}/recsvc.v1.Recommender/RecommendProducts",
        data=json.dumps({"customerId": known_customer, "limit": 3}).encode(),
        headers={"content-type": "application/json", "authorization": "Bearer rec-token"},
    )
    context = ssl.create_default_context(cafile=str(cert))
    with urllib.request.urlopen(request, timeout=10, context=context) as answer:
        assert len(json.loads(answer.read())["items"]) == 3


# -- hot swap -------------------------------------------------------------------------------


def test_hot_swap_under_load_fails_no_call(
    swap_dir: Path, known_customer: str, start_server: Callable[..., Running]
) -> None:
    running = start_server(serve_config(swap_dir))
    admin = pb_grpc.AdminStub(grpc.insecure_channel(f"127.0.0.1:{running.port}"))
    with Load(running.port, known_customer) as load:
        b.publish(swap_dir, V2)
        reply = admin.ReloadModel(pb.ReloadModelRequest(), metadata=ADMIN, timeout=30)
        assert (reply.changed, reply.version) == (True, V2)
        load.wait_for_calls(5)
        # An explicit version swaps back and becomes the published one.
        reply = admin.ReloadModel(pb.ReloadModelRequest(version=V1), metadata=ADMIN, timeout=30)
        assert (reply.changed, reply.version) == (True, V1)
        assert b.current_version(swap_dir) == V1
        load.wait_for_calls(5)
    assert load.failures == []
    for seen in load.versions:
        # Each thread sees V1, then V2, then V1 again: never a step back within a phase.
        phases = [v for i, v in enumerate(seen) if i == 0 or seen[i - 1] != v]
        assert phases == [V1, V2, V1], phases
    info = admin.GetModelInfo(pb.GetModelInfoRequest(), metadata=ADMIN, timeout=5)
    assert info.version == V1


def test_watcher_follows_current_by_itself(
    swap_dir: Path, known_customer: str, start_server: Callable[..., Running]
) -> None:
    running = start_server(serve_config(swap_dir, reload_interval=0.2))
    admin = pb_grpc.AdminStub(grpc.insecure_channel(f"127.0.0.1:{running.port}"))
    with Load(running.port, known_customer) as load:
        b.publish(swap_dir, V2)
        wait_for_version(admin, V2)
        load.wait_for_calls(3)
    assert load.failures == []
    assert all(seen[-1] == V2 for seen in load.versions)
    other = b.load_bundle(swap_dir / V2)
    assert admin.GetModelInfo(
        pb.GetModelInfoRequest(), metadata=ADMIN
    ).created_at == other.manifest.get("created_at")


def test_a_damaged_bundle_is_refused_and_the_old_one_keeps_serving(
    swap_dir: Path, known_customer: str, start_server: Callable[..., Running]
) -> None:
    running = start_server(serve_config(swap_dir, reload_interval=0.2))
    admin = pb_grpc.AdminStub(grpc.insecure_channel(f"127.0.0.1:{running.port}"))
    failed = {"outcome": "failed"}
    with Load(running.port, known_customer) as load:
        code, details = rpc_error(
            lambda: admin.ReloadModel(pb.ReloadModelRequest(version=V3), metadata=ADMIN)
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert b.FACTORS in details and "damaged" in details
        assert b.current_version(swap_dir) == V1  # never published

        # A bad deploy points CURRENT at it behind the server's back: the watcher refuses it.
        before = sample("recsvc_model_reloads_total", failed)
        tmp = swap_dir / ".CURRENT.test"
        tmp.write_text(V3 + "\n")
        os.replace(tmp, swap_dir / b.CURRENT)
        deadline = time.monotonic() + 10
        while sample("recsvc_model_reloads_total", failed) == before:
            assert time.monotonic() < deadline, "the watcher never tried the damaged bundle"
            time.sleep(0.05)
        code, details = rpc_error(
            lambda: admin.ReloadModel(pb.ReloadModelRequest(), metadata=ADMIN)
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "damaged" in details
        load.wait_for_calls(5)
        info = admin.GetModelInfo(pb.GetModelInfoRequest(), metadata=ADMIN)
        assert info.version == V1
    assert load.failures == []
    assert all(set(seen) == {V1} for seen in load.versions)

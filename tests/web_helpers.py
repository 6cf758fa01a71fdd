# mypy: disable-error-code="no-untyped-call"
"""The web face under test: a served model with Redis, loaded features, an offer catalog and
the HTTP port on, plus a small HTTP client (urllib: nothing between the test and the wire).

conftest.py registers this module as a plugin: ``web_server`` (a module-scoped
:class:`WebServer`) and ``grpc_call`` (its RPCs over native gRPC) reach every test module
without an import. The generated stubs are unannotated, hence the mypy line above.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import polars as pl
import pytest
from grpc_helpers import TOKENS
from redis_fixtures import new_namespace, start_server
from serving_fixtures import add_copy, free_port, trained

from feature_store import bulk
from feature_store.embedded import EmbeddedRedis
from feature_store.store import FeatureStore
from formats import bundle as b
from formats.loyalty import LIFECYCLE_STAGES, SEGMENTS
from recsvc.server import Running
from recsvc.v1 import recommender_pb2_grpc as pb_grpc
from training.features import feature_frames

PUBLIC_TOKEN = "public-token"
WEB_TOKENS = {**TOKENS, PUBLIC_TOKEN: frozenset({"public"})}
ALLOWED_ORIGIN = "http://shop.test:8000"
OFFERS = """
version: 1
offers:
  - offer_id: welcome
    title: 10% off your first order
    kind: percent_off
    value: 10
    cost: 2
    value_to_business: 10
    max_redemptions_per_customer: 1
    budget: 100
  - offer_id: shipping
    title: Free shipping
    kind: free_shipping
    cost: 1
    value_to_business: 2
"""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Http:
    base: str  # "http://127.0.0.1:PORT"

    def send(
        self,
        path: str,
        body: bytes | None = None,
        method: str = "POST",
        headers: dict[str, str] | None = None,
    ) -> Answer:
        request = urllib.request.Request(
            self.base + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return Answer(r.status, r.headers, r.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.headers, exc.read())

    def call(
        self,
        rpc: str,
        message: dict[str, Any] | None = None,
        token: str | None = "rec-token",
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """POST /<rpc> with ``message`` as JSON (the Connect protocol's unary call)."""
        sent = {"content-type": "application/json", **(headers or {})}
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        return self.send(f"/{rpc}", json.dumps(message or {}).encode(), headers=sent)

    def get(self, path: str, token: str | None = None) -> Answer:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return self.send(path, method="GET", headers=headers)


@dataclass
class WebServer:
    running: Running
    store: FeatureStore
    http: Http
    model_dir: Path
    known_customer: str

    @property
    def version(self) -> str:
        return self.running.store.engine.version


def load_features(store: FeatureStore, customer_ids: list[str]) -> dict[str, int]:
    """A features generation whose customers carry a segment and a stage (as analytics
    writes them); returns the segment counts."""
    ts = pl.datetime(2026, 1, 1, time_zone="UTC")
    interactions = pl.DataFrame(
        {"customer_id": customer_ids, "product_id": ["P000001"] * len(customer_ids)}
    ).with_columns(
        ts.alias("timestamp"), pl.lit("view").alias("event_type"), pl.lit(0.0).alias("amount")
    )
    catalog = pl.DataFrame(
        {"product_id": ["P000001"], "category": ["a"], "price": [1.0], "in_stock": [True]}
    )
    customers, products = feature_frames(interactions, catalog)
    n = customers.height
    customers = customers.with_columns(
        pl.Series("segment", [SEGMENTS[i % len(SEGMENTS)] for i in range(n)]),
        pl.Series("lifecycle_stage", [LIFECYCLE_STAGES[i % 5] for i in range(n)]),
    )
    bulk.load(store, customers, products, progress=False)
    counts = customers.group_by("segment").len()
    return dict(zip(counts["segment"].to_list(), counts["len"].to_list(), strict=True))


def start_web_server(
    tmp_path_factory: pytest.TempPathFactory, redis: EmbeddedRedis, **overrides: Any
) -> WebServer:
    root = tmp_path_factory.mktemp("web")
    model_dir = root / "models"
    add_copy(model_dir, trained(tmp_path_factory), "20260101T000000Z-web", publish=True)
    offers = root / "offers.yaml"
    offers.write_text(OFFERS)
    namespace = new_namespace()
    store = FeatureStore(redis.url, namespace=namespace)
    loaded = b.load_bundle(model_dir / "20260101T000000Z-web")
    row = int(np.argmax(np.diff(loaded.user_items.indptr)))
    ids = [str(c) for c in loaded.customer_ids.to_list()[:60]]
    load_features(store, ids)
    values: dict[str, Any] = {
        "auth_tokens": WEB_TOKENS,
        "http_port": free_port(),
        "cors_origins": (ALLOWED_ORIGIN,),
        "offers": offers,
        **overrides,
    }
    running = start_server(model_dir, redis.url, namespace, **values)
    http = Http(f"http://127.0.0.1:{running.http_port}")
    return WebServer(running, store, http, model_dir, str(loaded.customer_ids[row]))


@pytest.fixture(scope="module")
def web_server(
    tmp_path_factory: pytest.TempPathFactory, embedded_redis: EmbeddedRedis
) -> Iterator[WebServer]:
    """A server with HTTP on, Redis, 60 loaded customers, two offers; public rate limit off."""
    server = start_web_server(tmp_path_factory, embedded_redis, address_rate_limit=None)
    yield server
    server.running.stop(grace=1.0)
    server.store.close()


@pytest.fixture(scope="module")
def grpc_call(web_server: WebServer) -> Iterator[Callable[..., Any]]:
    """Call ``service/Method`` over native gRPC with ``token``; returns the response message."""
    channel = grpc.insecure_channel(f"127.0.0.1:{web_server.running.port}")
    stubs = {
        "recsvc.v1.Recommender": pb_grpc.RecommenderStub(channel),
        "recsvc.v1.Events": pb_grpc.EventsStub(channel),
        "recsvc.v1.Admin": pb_grpc.AdminStub(channel),
        "recsvc.v1.Privacy": pb_grpc.PrivacyStub(channel),
    }

    def call(rpc: str, request: Any, token: str = "rec-token") -> Any:
        service, method = rpc.split("/")
        fn = getattr(stubs[service], method)
        return fn(request, metadata=(("authorization", f"Bearer {token}"),), timeout=30)

    yield call
    channel.close()

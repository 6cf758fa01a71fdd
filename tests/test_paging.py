# mypy: disable-error-code="no-untyped-call"
"""Next pages of RecommendProducts: no repeats across pages and workers, tamper-evident tokens.

Real servers on loopback sharing the session's Redis. The generated stubs are unannotated,
hence the mypy line above.
"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import polars as pl
import pytest
import redis
from grpc_helpers import REC, rpc_error
from grpc_helpers import serve_config as plain_serve_config
from redis_fixtures import new_namespace
from redis_fixtures import serve_config as redis_serve_config
from serving_fixtures import add_copy, trained

from feature_store.keys import Keys
from formats import bundle as b
from formats.errors import InvalidRequest
from formats.types import Context, Filter
from recsvc.config import ConfigError, ServeConfig
from recsvc.paging import PageTokens, fits_in_token, request_digest
from recsvc.server import Running, start, with_page_key
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc

V1 = "20260101T000000Z-first"
KEY = "k" * 32


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("paging") / "models"
    add_copy(models, trained(tmp_path_factory, "exact"), V1, publish=True)
    return models


@pytest.fixture(scope="module")
def customer(model_dir: Path) -> str:
    loaded = b.load_bundle(model_dir / V1)
    return str(loaded.customer_ids[0])


@pytest.fixture
def namespace() -> str:
    return new_namespace()


@pytest.fixture
def servers(model_dir: Path, redis_url: str, namespace: str) -> Iterator[Callable[..., Any]]:
    """Start servers (same key, same Redis namespace unless told); a Recommender stub each."""
    started: list[tuple[Running, grpc.Channel]] = []

    def run(**overrides: Any) -> Any:
        values = {"page_token_key": KEY, **overrides}
        running = start(redis_serve_config(model_dir, redis_url, namespace, **values))
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        started.append((running, channel))
        return pb_grpc.RecommenderStub(channel)

    yield run
    for running, channel in started:
        channel.close()
        running.stop(grace=1.0)


def page(stub: Any, customer: str, limit: int = 10, token: str = "", **fields: Any) -> Any:
    return stub.RecommendProducts(
        pb.RecommendProductsRequest(customer_id=customer, limit=limit, page_token=token, **fields),
        metadata=REC,
        timeout=10,
    )


def refused(stub: Any, customer: str, token: str) -> tuple[grpc.StatusCode, str]:
    return rpc_error(lambda: page(stub, customer, token=token))


def ids(reply: Any) -> list[str]:
    return [i.product_id for i in reply.items]


def test_pages_two_and_three_repeat_nothing_and_continue_the_ranking(
    servers: Callable[..., Any], customer: str
) -> None:
    first_worker, second_worker = servers(), servers()  # two workers (or replicas)
    one = page(first_worker, customer)
    assert len(one.items) == 10 and one.next_page_token
    two = page(second_worker, customer, token=one.next_page_token)  # the other worker
    assert len(two.items) == 10 and two.next_page_token
    three = page(first_worker, customer, token=two.next_page_token)
    assert len(three.items) == 10
    assert not set(ids(two)) & set(ids(one))
    assert not set(ids(three)) & (set(ids(one)) | set(ids(two)))
    # The same ranking, continued: the first 30 of one long list.
    whole = page(first_worker, customer, limit=30)
    assert ids(one) + ids(two) + ids(three) == ids(whole)
    # A page size may change from page to page.
    four = page(second_worker, customer, limit=3, token=three.next_page_token)
    assert len(four.items) == 3
    assert not set(ids(four)) & set(ids(whole))


def test_a_tampered_or_forged_token_is_refused(servers: Callable[..., Any], customer: str) -> None:
    stub = servers()
    token = page(stub, customer).next_page_token
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[20] ^= 0x01  # one bit of the page number / expiry
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    for bad in (
        tampered,
        token[:-2],
        "not-a-token",
        base64.urlsafe_b64encode(os.urandom(47)).decode(),
    ):
        code, details = refused(stub, customer, bad)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert "start again" in details
    # Signed with another key (another deployment): refused too.
    foreign = servers(page_token_key="z" * 32)
    code, details = rpc_error(lambda: page(foreign, customer, token=token))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "another key" in details


def test_a_token_belongs_to_its_request_and_expires(
    servers: Callable[..., Any], customer: str, redis_url: str, namespace: str
) -> None:
    stub = servers()
    token = page(stub, customer).next_page_token
    code, details = rpc_error(lambda: page(stub, "someone-else", token=token))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "another request" in details
    code, details = rpc_error(
        lambda: page(stub, customer, token=token, filter=pb.Filter(in_stock_only=True))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "another request" in details
    # The first page wrote nothing: its products travel in the token.
    client = redis.Redis.from_url(redis_url)
    prefix = f"{Keys(namespace).prefix}:{{page:*"
    assert not list(client.scan_iter(prefix))
    assert len(token) > 63  # 47 bytes and the first page's ids
    token = page(stub, customer, token=token).next_page_token  # from the second page on: kept
    # The shown set's TTL passed (or Redis lost it): the list cannot continue without repeats.
    keys = list(client.scan_iter(prefix))
    assert len(keys) == 1
    for key in keys:
        ttl = int(client.ttl(key))  # type: ignore[arg-type]
        assert 0 < ttl <= 1800
        client.delete(key)
    client.close()
    code, details = rpc_error(lambda: page(stub, customer, token=token))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "expired" in details
    assert "start again" in details


def test_tokens_round_trip_and_expire() -> None:
    tokens = PageTokens(KEY.encode(), ttl_s=1800)
    request = request_digest("C1", Filter(), Context())
    token = tokens.issue("ab" * 16, 2, request, now=1000.0)
    assert len(token) == 63
    opened = tokens.open(token, request, now=2000.0)
    assert opened.session == "ab" * 16 and opened.page == 2
    with pytest.raises(InvalidRequest, match="expired"):
        tokens.open(token, request, now=1000.0 + 1801)
    other = request_digest("C1", Filter(include_categories=frozenset({"x"})), Context())
    with pytest.raises(InvalidRequest, match="another request"):
        tokens.open(token, other, now=2000.0)
    # The limit is not part of a request: the digest takes none.
    assert request_digest("C1", Filter(), Context()) == request
    # A first page's products ride in the token, under the same signature.
    carried = tokens.issue("cd" * 16, 2, request, now=1000.0, shown=("P1", "Pé 2"))
    assert tokens.open(carried, request, now=2000.0).shown == ("P1", "Pé 2")
    raw = bytearray(base64.urlsafe_b64decode(carried + "=" * (-len(carried) % 4)))
    raw[-20] ^= 0x01  # a byte of the ids
    altered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(InvalidRequest, match="altered"):
        tokens.open(altered, request, now=2000.0)
    assert fits_in_token(("P",) * 20) and not fits_in_token(("x" * 100,) * 20)


def test_a_list_ends_when_nothing_is_left(
    servers: Callable[..., Any], customer: str, model_dir: Path
) -> None:
    """Page through one category, 7 at a time: every product of it once, then the end."""
    products = b.load_bundle(model_dir / V1).products
    sizes = products["category"].value_counts().sort("count")
    category, size = sizes.row(len(sizes) // 2)
    in_category = set(products.filter(pl.col("category") == category)["product_id"].to_list())
    stub = servers()
    only = pb.Filter(include_categories=[category], include_purchased=True)
    shown: list[str] = []
    token, pages = "", 0
    while True:
        reply = page(stub, customer, limit=7, token=token, filter=only)
        pages += 1
        assert not set(ids(reply)) & set(shown)
        shown += ids(reply)
        token = reply.next_page_token
        if not token:
            break
        assert len(reply.items) == 7 and pages < 50
    assert set(shown) == in_category and len(shown) == size
    assert pages == size // 7 + 1  # the last page is short (possibly empty)


def test_without_a_feature_store_there_are_no_pages(model_dir: Path, customer: str) -> None:
    running = start(plain_serve_config(model_dir, page_token_key=KEY))
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        stub = pb_grpc.RecommenderStub(channel)
        assert page(stub, customer).next_page_token == ""
        # A valid token (from a server that had Redis): what it showed cannot be read.
        request = request_digest(customer, Filter(), Context())
        token = PageTokens(KEY.encode(), 1800).issue("ab" * 16, 2, request)
        code, details = rpc_error(lambda: page(stub, customer, token=token))
        assert code == grpc.StatusCode.UNAVAILABLE
        assert "retry, or start again without page_token" in details
    finally:
        channel.close()
        running.stop(grace=1.0)


def test_the_page_key_is_generated_once_and_kept_private_on_loopback(tmp_path: Path) -> None:
    config = ServeConfig(model_dir=tmp_path / "models")
    first = with_page_key(config)
    key_file = tmp_path / "page-token-key"
    assert len(first.page_token_key) >= 32 and first.paging
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert with_page_key(config).page_token_key == first.page_token_key  # every start agrees
    given = with_page_key(ServeConfig(model_dir=tmp_path / "models", page_token_key=KEY))
    assert given.page_token_key == KEY
    public = with_page_key(ServeConfig(model_dir=tmp_path / "m2", host="0.0.0.0"))
    assert not public.paging and not (tmp_path / "m2").exists()


def test_paging_settings_are_checked(tmp_path: Path) -> None:
    env = {"RECSVC_MODEL_DIR": str(tmp_path), "RECSVC_PAGE_TTL": "600"}
    config = ServeConfig.from_env({**env, "RECSVC_PAGE_TOKEN_KEY": KEY})
    assert config.page_ttl == 600 and config.page_token_key == KEY
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        ServeConfig.from_env({**env, "RECSVC_PAGE_TOKEN_KEY": "short"})
    with pytest.raises(ConfigError, match=r"RECSVC_PAGE_TTL=5: use 60\.\.86400"):
        ServeConfig.from_env({**env, "RECSVC_PAGE_TTL": "5"})
    experiments = ServeConfig.from_env({**env, "RECSVC_EXPERIMENTS": "x.yaml"}).experiments
    assert experiments == Path("x.yaml")


def test_a_list_ends_at_the_bound_of_shown_products(
    servers: Callable[..., Any], customer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recsvc.product_service

    monkeypatch.setattr(recsvc.product_service, "PAGE_MAX", 15)  # 1,000 in production
    stub = servers()
    one = page(stub, customer, limit=7)
    two = page(stub, customer, limit=7, token=one.next_page_token)
    assert two.next_page_token  # 14 shown: the set stays under its bound
    three = page(stub, customer, limit=7, token=two.next_page_token)
    assert len(three.items) == 7 and three.next_page_token == ""
    assert not set(ids(three)) & (set(ids(one)) | set(ids(two)))

# mypy: disable-error-code="no-untyped-call"
"""The `public` scope (a token in a web page) and the rate limits, over gRPC and HTTP alike:
the rules live in recsvc.auth, so both transports must answer the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from grpc_helpers import new_id
from web_helpers import PUBLIC_TOKEN, WebServer, start_web_server

from feature_store.embedded import EmbeddedRedis
from recsvc.auth import Auth, Denied, Granted, client_address
from recsvc.ratelimit import Limit
from recsvc.services import PUBLIC_EVENT_TYPES, SCOPE_BY_SERVICE, public_may_call
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc

PUBLIC = (("authorization", f"Bearer {PUBLIC_TOKEN}"),)


def event(customer: str, kind: str, **fields: Any) -> pb.Event:
    return pb.Event(
        event_id=new_id(),
        customer_id=customer,
        type=getattr(pb, f"EVENT_TYPE_{kind.upper()}"),
        **fields,
    )


# (rpc, request, allowed): what a public token may and may not do.
CASES: list[tuple[str, Any, bool]] = [
    ("recsvc.v1.Recommender/RecommendProducts",
     pb.RecommendProductsRequest(customer_id="C1"), True),
    ("recsvc.v1.Recommender/SimilarProducts",
     pb.SimilarProductsRequest(product_id="P000001"), True),
    ("recsvc.v1.Recommender/RankProducts",
     pb.RankProductsRequest(customer_id="C1", product_ids=["P000001"]), True),
    ("recsvc.v1.Recommender/RecommendOffers", pb.RecommendOffersRequest(customer_id="C1"), True),
    ("recsvc.v1.Recommender/GetCustomerProfile",
     pb.GetCustomerProfileRequest(customer_id="C1"), False),
    ("recsvc.v1.Admin/GetModelInfo", pb.GetModelInfoRequest(), False),
    ("recsvc.v1.Admin/ReloadModel", pb.ReloadModelRequest(), False),
    ("recsvc.v1.Privacy/ExportCustomerData", pb.ExportCustomerDataRequest(customer_id="C1"), False),
    ("recsvc.v1.Privacy/ForgetCustomer", pb.ForgetCustomerRequest(customer_id="C1"), False),
]  # fmt: skip


def outcome_grpc(call: Callable[..., Any], rpc: str, request: Any) -> tuple[str, str]:
    try:
        call(rpc, request, PUBLIC_TOKEN)
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        return exc.code().name, exc.details() or ""
    return "OK", ""


def outcome_http(server: WebServer, rpc: str, request: Any) -> tuple[str, str, int]:
    answer = server.http.call(rpc, json_format.MessageToDict(request), token=PUBLIC_TOKEN)
    if answer.status == 200:
        return "OK", "", 200
    body = answer.json()
    return body["code"].upper(), body["message"], answer.status


@pytest.mark.parametrize(("rpc", "request_", "allowed"), CASES)
def test_public_token_reads_recommendations_and_nothing_else(
    web_server: WebServer,
    grpc_call: Callable[..., Any],
    rpc: str,
    request_: Any,
    allowed: bool,
) -> None:
    code, message = outcome_grpc(grpc_call, rpc, request_)
    http_code, http_message, status = outcome_http(web_server, rpc, request_)
    assert (http_code, http_message) == (code, message)  # one rule, both transports
    if allowed:
        assert code == "OK", message
    else:
        assert (code, status) == ("PERMISSION_DENIED", 403)
        assert "a public token may not call it" in message


@pytest.mark.parametrize(
    ("kinds", "allowed"),
    [
        (["view"], True),
        (["click", "add_to_cart", "rec_impression", "rec_click"], True),
        (["offer_impression", "offer_click"], True),
        (["purchase"], False),
        (["offer_redeemed"], False),
        (["view", "purchase"], False),  # one refused event refuses the batch
    ],
)
def test_public_token_tracks_only_what_a_page_may_report(
    web_server: WebServer, grpc_call: Callable[..., Any], kinds: list[str], allowed: bool
) -> None:
    def batch() -> pb.TrackEventsRequest:
        events = []
        for kind in kinds:
            target = (
                {"offer_id": "welcome"} if kind.startswith("offer") else {"product_id": "P000001"}
            )
            events.append(event(web_server.known_customer, kind, amount=1.0, **target))
        return pb.TrackEventsRequest(events=events)

    rpc = "recsvc.v1.Events/TrackEvents"
    before = web_server.store.activity(web_server.known_customer).counters
    code, message = outcome_grpc(grpc_call, rpc, batch())
    http_code, http_message, status = outcome_http(web_server, rpc, batch())
    assert (http_code, http_message) == (code, message)
    if allowed:
        assert code == "OK", message
    else:
        assert (code, status) == ("PERMISSION_DENIED", 403)
        assert "a public token may not track" in message
        refused = sorted({k for k in kinds if k not in PUBLIC_EVENT_TYPES})
        assert ", ".join(refused) in message
        assert web_server.store.activity(web_server.known_customer).counters == before


def test_public_calls_past_the_address_rate_get_429_and_retry_after(
    tmp_path_factory: pytest.TempPathFactory, embedded_redis: EmbeddedRedis
) -> None:
    server = start_web_server(
        tmp_path_factory,
        embedded_redis,
        # Slow refills: a loaded machine must not refill a bucket between two calls.
        address_rate_limit=Limit(rate=0.1, burst=3),
        rate_limit=Limit(rate=0.1, burst=6),
    )
    rpc = "recsvc.v1.Recommender/RecommendProducts"
    request = {"customerId": server.known_customer, "limit": 2}
    channel = grpc.insecure_channel(f"127.0.0.1:{server.running.port}")
    try:
        stub = pb_grpc.RecommenderStub(channel)
        # Three calls from this address in a burst, gRPC and HTTP counted together.
        stub.RecommendProducts(
            pb.RecommendProductsRequest(customer_id="C1"), metadata=PUBLIC, timeout=30
        )
        assert server.http.call(rpc, request, token=PUBLIC_TOKEN).status == 200
        assert server.http.call(rpc, request, token=PUBLIC_TOKEN).status == 200
        refused = server.http.call(rpc, request, token=PUBLIC_TOKEN)
        assert refused.status == 429
        assert refused.json()["code"] == "resource_exhausted"
        assert "per client address" in refused.json()["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 10
        with pytest.raises(grpc.RpcError) as info:
            stub.RecommendProducts(
                pb.RecommendProductsRequest(customer_id="C1"), metadata=PUBLIC, timeout=30
            )
        call = info.value
        assert isinstance(call, grpc.Call)
        assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert 1 <= int(dict(call.trailing_metadata() or ())["retry-after"]) <= 10
        # A backend token is not held to the per-address limit, only to its own.
        for _ in range(6):
            assert server.http.call(rpc, request, token="rec-token").status == 200
        over = server.http.call(rpc, request, token="rec-token")
        assert over.status == 429 and "for this token" in over.json()["message"]
        assert int(over.headers["retry-after"]) >= 1
    finally:
        channel.close()
        server.running.stop(grace=1.0)
        server.store.close()


# -- the rules, without a server -------------------------------------------------------------


def test_which_rpcs_the_public_scope_grants() -> None:
    assert public_may_call("/recsvc.v1.Recommender/RecommendProducts")
    assert public_may_call("/recsvc.v1.Recommender/AnyReadAddedLater")
    assert not public_may_call("/recsvc.v1.Recommender/GetCustomerProfile")
    assert public_may_call("/recsvc.v1.Events/TrackEvents")
    for service in ("recsvc.v1.Admin", "recsvc.v1.Privacy"):
        assert not public_may_call(f"/{service}/Anything")
    assert "public" not in SCOPE_BY_SERVICE.values()  # no service is public as a whole


def test_a_token_with_public_and_a_full_scope_is_not_held_to_public_rules() -> None:
    auth = Auth({"both": frozenset({"public", "events"}), "web": frozenset({"public"})})
    meta = (("authorization", "Bearer both"),)
    assert auth.check("/recsvc.v1.Events/TrackEvents", meta) == Granted(public=False)
    web = (("authorization", "Bearer web"),)
    assert auth.check("/recsvc.v1.Events/TrackEvents", web) == Granted(public=True)
    denied = auth.check("/recsvc.v1.Admin/GetModelInfo", web)
    assert isinstance(denied, Denied) and denied.code == grpc.StatusCode.PERMISSION_DENIED


def test_unknown_event_types_are_left_to_validation() -> None:
    auth = Auth({"web": frozenset({"public"})})
    unspecified = pb.Event(event_id="e", customer_id="c", type=pb.EVENT_TYPE_UNSPECIFIED)
    request = pb.TrackEventsRequest(events=[unspecified])
    assert auth.check_public("/recsvc.v1.Events/TrackEvents", request, "1.2.3.4") is None


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:10.1.2.3:5555", "10.1.2.3"),
        ("ipv6:[::1]:5555", "::1"),
        ("ipv6:[2001:db8::7]:443", "2001:db8::7"),
        ("unix:/tmp/sock", "unix:/tmp/sock"),
    ],
)
def test_client_address_of_a_peer(peer: str, address: str) -> None:
    assert client_address(peer) == address


@pytest.mark.parametrize("trusted", [True, False], ids=["behind-a-trusted-proxy", "direct"])
def test_the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy(
    tmp_path_factory: pytest.TempPathFactory, embedded_redis: EmbeddedRedis, trusted: bool
) -> None:
    server = start_web_server(
        tmp_path_factory,
        embedded_redis,
        address_rate_limit=Limit(rate=0.1, burst=1),
        trusted_proxies=("127.0.0.1",) if trusted else (),
    )
    rpc = "recsvc.v1.Recommender/RecommendProducts"

    def call(client: str) -> int:
        answer = server.http.call(
            rpc, {"customerId": "C1"}, token=PUBLIC_TOKEN, headers={"x-forwarded-for": client}
        )
        return answer.status

    try:
        assert call("203.0.113.7") == 200
        assert call("203.0.113.7") == 429
        # Another shopper behind the same proxy has a bucket of their own, if the proxy is
        # trusted; otherwise the header is ignored and both are the proxy's address.
        assert call("198.51.100.9") == (200 if trusted else 429)
    finally:
        server.running.stop(grace=1.0)
        server.store.close()

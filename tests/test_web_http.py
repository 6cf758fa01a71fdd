"""Every RPC over HTTP (Connect JSON and binary, gRPC-Web) against native gRPC on the same
server: the same answers, the same errors with their HTTP statuses, CORS, and RPCs reached from
the descriptors alone."""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from grpc_helpers import sample
from web_helpers import ALLOWED_ORIGIN, WebServer

from recsvc.services import SERVICES
from recsvc.v1 import recommender_pb2 as pb
from recsvc.web.protocol import HTTP_STATUS, connect_code

RECOMMEND = "recsvc.v1.Recommender/RecommendProducts"


def as_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def items(answer: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(i["productId"], i.get("category", ""), i.get("reason", "")) for i in answer["items"]]


def test_http_json_returns_the_items_grpc_returns(
    web_server: WebServer, grpc_call: Callable[..., Any]
) -> None:
    customer = web_server.known_customer
    requests = [
        (RECOMMEND, pb.RecommendProductsRequest(customer_id=customer, limit=10)),
        (RECOMMEND, pb.RecommendProductsRequest(customer_id="nobody-we-know", limit=5)),
        (
            RECOMMEND,
            pb.RecommendProductsRequest(
                customer_id=customer,
                limit=7,
                filter=pb.Filter(exclude_categories=["snacks"], in_stock_only=True),
            ),
        ),
        (
            "recsvc.v1.Recommender/SimilarProducts",
            pb.SimilarProductsRequest(product_id="P000003", limit=6),
        ),
        (
            "recsvc.v1.Recommender/RankProducts",
            pb.RankProductsRequest(customer_id=customer, product_ids=["P000001", "P000005", "X"]),
        ),
    ]
    for rpc, request in requests:
        native = as_json(grpc_call(rpc, request))
        answer = web_server.http.call(rpc, as_json(request))
        assert answer.status == 200, answer.body
        assert answer.headers["content-type"] == "application/json"
        got = answer.json()
        assert items(got) == items(native), rpc
        assert got["items"], rpc
        assert got["modelVersion"] == native["modelVersion"] == web_server.version
        assert got["recommendationId"] != native["recommendationId"]  # one per answer
        assert got.get("personalized") == native.get("personalized")


def test_snake_case_json_and_unknown_fields_are_accepted(web_server: WebServer) -> None:
    answer = web_server.http.call(
        RECOMMEND, {"customer_id": web_server.known_customer, "limit": 3, "added_later": 1}
    )
    assert answer.status == 200, answer.body
    assert len(answer.json()["items"]) == 3


def test_binary_connect_call(web_server: WebServer) -> None:
    request = pb.RecommendProductsRequest(customer_id=web_server.known_customer, limit=4)
    answer = web_server.http.send(
        f"/{RECOMMEND}",
        request.SerializeToString(),
        headers={"content-type": "application/proto", "authorization": "Bearer rec-token"},
    )
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/proto"
    assert len(pb.RecommendProductsResponse.FromString(answer.body).items) == 4


def grpc_web(
    server: WebServer, rpc: str, request: Any, token: str, text: bool = False
) -> tuple[bytes | None, dict[str, str]]:
    """A gRPC-Web call: (the response message bytes or None, the trailers)."""
    data = request.SerializeToString()
    body = struct.pack(">BI", 0, len(data)) + data
    kind = "application/grpc-web-text" if text else "application/grpc-web+proto"
    answer = server.http.send(
        f"/{rpc}",
        base64.b64encode(body) if text else body,
        headers={"content-type": kind, "authorization": f"Bearer {token}", "x-grpc-web": "1"},
    )
    assert answer.status == 200  # gRPC-Web reports errors in trailers
    raw = base64.b64decode(answer.body) if text else answer.body
    message = None
    trailers: dict[str, str] = {}
    while raw:
        flags, length = struct.unpack(">BI", raw[:5])
        payload, raw = raw[5 : 5 + length], raw[5 + length :]
        if flags & 0x80:
            for line in payload.decode().split("\r\n"):
                if line:
                    key, _, value = line.partition(":")
                    trailers[key.strip()] = value.strip()
        else:
            message = payload
    return message, trailers


@pytest.mark.parametrize("text", [False, True], ids=["binary", "text"])
def test_grpc_web(web_server: WebServer, grpc_call: Callable[..., Any], text: bool) -> None:
    request = pb.RecommendProductsRequest(customer_id=web_server.known_customer, limit=5)
    message, trailers = grpc_web(web_server, RECOMMEND, request, "rec-token", text)
    assert trailers["grpc-status"] == "0"
    assert message is not None
    got = pb.RecommendProductsResponse.FromString(message)
    native = grpc_call(RECOMMEND, request)
    assert [i.product_id for i in got.items] == [i.product_id for i in native.items]
    message, trailers = grpc_web(web_server, RECOMMEND, request, "wrong", text)
    assert message is None
    assert trailers["grpc-status"] == str(grpc.StatusCode.UNAUTHENTICATED.value[0])
    assert trailers["grpc-message"] == "unknown token"


def test_every_code_has_the_connect_http_status() -> None:
    expected = {
        "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
        "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
        "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
        "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
        "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
    }  # fmt: skip
    assert {code.name: status for code, status in HTTP_STATUS.items()} == expected
    assert set(HTTP_STATUS) == set(grpc.StatusCode)
    assert connect_code(grpc.StatusCode.CANCELLED) == "canceled"
    assert connect_code(grpc.StatusCode.INVALID_ARGUMENT) == "invalid_argument"


# (rpc, request, token, expected code): each error the server can give, called both ways.
ERRORS: list[tuple[str, Any, str, grpc.StatusCode]] = [
    (RECOMMEND, pb.RecommendProductsRequest(customer_id=""), "rec-token",
     grpc.StatusCode.INVALID_ARGUMENT),
    (RECOMMEND, pb.RecommendProductsRequest(customer_id="c", limit=500), "rec-token",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("recsvc.v1.Recommender/SimilarProducts", pb.SimilarProductsRequest(product_id="no-such"),
     "rec-token", grpc.StatusCode.NOT_FOUND),
    (RECOMMEND, pb.RecommendProductsRequest(customer_id="c"), "no-such-token",
     grpc.StatusCode.UNAUTHENTICATED),
    ("recsvc.v1.Admin/GetModelInfo", pb.GetModelInfoRequest(), "rec-token",
     grpc.StatusCode.PERMISSION_DENIED),
    ("recsvc.v1.Admin/ReloadModel", pb.ReloadModelRequest(version="no-such-version"),
     "admin-token", grpc.StatusCode.FAILED_PRECONDITION),
    ("recsvc.v1.Admin/ReloadModel", pb.ReloadModelRequest(version="../x"), "admin-token",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("recsvc.v1.Events/TrackEvents", pb.TrackEventsRequest(), "events-token",
     grpc.StatusCode.INVALID_ARGUMENT),
]  # fmt: skip


@pytest.mark.parametrize(("rpc", "request_", "token", "code"), ERRORS)
def test_errors_are_the_same_over_http_with_their_status(
    web_server: WebServer,
    grpc_call: Callable[..., Any],
    rpc: str,
    request_: Any,
    token: str,
    code: grpc.StatusCode,
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        grpc_call(rpc, request_, token)
    native = info.value
    assert isinstance(native, grpc.Call)
    assert native.code() == code
    answer = web_server.http.call(rpc, as_json(request_), token=token)
    assert answer.status == HTTP_STATUS[code]
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"code": connect_code(code), "message": native.details()}


def test_unavailable_maps_to_503(
    tmp_path_factory: pytest.TempPathFactory, embedded_redis: Any
) -> None:
    from web_helpers import start_web_server

    server = start_web_server(tmp_path_factory, embedded_redis, offers=None)
    try:
        answer = server.http.call("recsvc.v1.Admin/ReloadOffers", {}, token="admin-token")
        assert answer.status == 503
        assert answer.json()["code"] == "unavailable"
        assert "RECSVC_OFFERS" in answer.json()["message"]
    finally:
        server.running.stop(grace=1.0)
        server.store.close()


def test_bad_requests_of_the_transport(web_server: WebServer) -> None:
    http = web_server.http
    bad_json = http.send(
        f"/{RECOMMEND}",
        b'{"customerId": ',
        headers={"content-type": "application/json", "authorization": "Bearer rec-token"},
    )
    assert bad_json.status == 400
    assert bad_json.json()["code"] == "invalid_argument"
    assert (
        "not a valid recsvc.v1.Recommender/RecommendProducts request" in bad_json.json()["message"]
    )
    wrong_type = http.call(RECOMMEND, {"customerId": "c", "limit": "many"})
    assert wrong_type.status == 400
    unknown = http.call("recsvc.v1.Recommender/NoSuchThing", {})
    assert unknown.status == 404
    assert unknown.json()["code"] == "unimplemented"
    form = http.send(f"/{RECOMMEND}", b"a=b", headers={"content-type": "text/plain"})
    assert form.status == 415
    assert "application/json" in form.json()["message"]
    get = http.get(f"/{RECOMMEND}")
    assert get.status == 405
    # A deadline already passed is refused before the engine runs, as over gRPC.
    late = http.call(RECOMMEND, {"customerId": "c"}, headers={"connect-timeout-ms": "0"})
    assert late.status == 504
    assert late.json()["code"] == "deadline_exceeded"


def test_every_unary_rpc_of_the_proto_is_reachable(web_server: WebServer) -> None:
    """No route is written per RPC: every method the descriptors list answers (here: refuses
    a caller without a token), an RPC added tomorrow included."""
    methods = [
        f"{s}/{m.name}"
        for s in SERVICES
        for m in pb.DESCRIPTOR.services_by_name[s.rsplit(".", 1)[1]].methods
    ]
    assert len(methods) >= 13
    for rpc in methods:
        answer = web_server.http.call(rpc, {}, token=None)
        assert answer.status == 401, rpc
        assert answer.json()["code"] == "unauthenticated"
    health = web_server.http.call("grpc.health.v1.Health/Check", {}, token=None)
    assert health.json() == {"status": "SERVING"}


def test_http_calls_count_in_the_rpc_metrics(web_server: WebServer) -> None:
    labels = {"method": RECOMMEND, "code": "OK"}
    before = sample("recsvc_rpc_duration_seconds_count", labels)
    for _ in range(3):
        assert web_server.http.call(RECOMMEND, {"customerId": "c", "limit": 2}).status == 200
    assert sample("recsvc_rpc_duration_seconds_count", labels) == before + 3


def test_cors_allows_only_listed_origins(web_server: WebServer) -> None:
    http = web_server.http

    def preflight(origin: str) -> Any:
        return http.send(
            f"/{RECOMMEND}",
            method="OPTIONS",
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization,content-type",
            },
        )

    allowed = preflight(ALLOWED_ORIGIN)
    assert allowed.status == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    other = preflight("http://evil.test")
    assert other.status == 400
    assert other.headers["access-control-allow-origin"] is None
    # The answers themselves: a grant for the listed origin only.
    ok = http.call(RECOMMEND, {"customerId": "c"}, headers={"origin": ALLOWED_ORIGIN})
    assert ok.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "retry-after" in ok.headers["access-control-expose-headers"]
    stranger = http.call(RECOMMEND, {"customerId": "c"}, headers={"origin": "http://evil.test"})
    assert stranger.headers["access-control-allow-origin"] is None

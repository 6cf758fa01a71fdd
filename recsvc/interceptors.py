"""gRPC interceptors: bearer-token auth with scopes (the rules are recsvc.auth), and per-RPC
metrics. The HTTP layer (recsvc.web) runs these same interceptors around the same handlers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from recsvc.auth import Auth, Denied, client_address

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    Interceptor = grpc.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    Interceptor = grpc.ServerInterceptor


def _deny(denied: Denied) -> Handler:
    def abort(request: Any, context: grpc.ServicerContext) -> Any:
        _abort(context, denied)

    return grpc.unary_unary_rpc_method_handler(abort)


def _abort(context: grpc.ServicerContext, denied: Denied) -> None:
    if denied.retry_after is not None:  # whole seconds, as HTTP's Retry-After
        context.set_trailing_metadata((("retry-after", str(math.ceil(denied.retry_after))),))
    context.abort(denied.code, denied.message)


class AuthInterceptor(Interceptor):
    """`authorization: Bearer <token>` metadata, each token with its scopes (recsvc.auth)."""

    def __init__(self, auth: Auth) -> None:
        self.auth = auth

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method = handler_call_details.method
        decision = self.auth.check(method, handler_call_details.invocation_metadata)
        if isinstance(decision, Denied):
            return _deny(decision)
        handler = continuation(handler_call_details)
        if not decision.public or handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        auth = self.auth

        def public(request: Any, context: grpc.ServicerContext) -> Any:
            denied = auth.check_public(method, request, client_address(context.peer()))
            if denied is not None:
                _abort(context, denied)
            return inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            public,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@dataclass(frozen=True)
class Undecodable:
    """What a request that is not a valid message of its type deserializes to."""

    error: str


def _lenient(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """gRPC answers a request its deserializer rejects with INTERNAL, which says "our bug";
    the caller's bytes are at fault, so hand the handler a marker it turns into
    INVALID_ARGUMENT."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # protobuf's DecodeError and friends
            return Undecodable(f"{type(exc).__name__}: {exc}"[:200])

    return parse


class MetricsInterceptor(Interceptor):
    """Latency histogram per method and status code (unary RPCs); malformed request bytes
    answered INVALID_ARGUMENT."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        from recsvc.metrics import RPC_SECONDS

        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method.lstrip("/")

        def timed(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            failed = False
            try:
                if isinstance(request, Undecodable):
                    context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"the request is not a valid {method} request message ({request.error})",
                    )
                return inner(request, context)
            except BaseException:
                failed = True
                raise
            finally:
                code = context.code()  # type: ignore[attr-defined]
                name = code.name if code is not None else ("UNKNOWN" if failed else "OK")
                RPC_SECONDS.labels(method, name).observe(time.perf_counter() - start)

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

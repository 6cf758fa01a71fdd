"""gRPC interceptors: bearer-token auth with scopes, and per-RPC metrics."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from recsvc.services import SCOPE_BY_SERVICE

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    Interceptor = grpc.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    Interceptor = grpc.ServerInterceptor


def _service(method: str) -> str:
    return method.rsplit("/", 2)[-2] if method.count("/") >= 2 else ""


def _deny(code: grpc.StatusCode, message: str) -> Handler:
    def abort(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(abort)


class AuthInterceptor(Interceptor):
    """`authorization: Bearer <token>` metadata, each token with its scopes."""

    def __init__(self, tokens: dict[str, frozenset[str]]) -> None:
        self._tokens = [(t.encode(), scopes) for t, scopes in tokens.items()]

    def scopes_of(self, token: str) -> frozenset[str] | None:
        presented = token.encode()
        found: frozenset[str] | None = None
        for known, scopes in self._tokens:  # no early exit: time does not depend on the match
            if hmac.compare_digest(presented, known):
                found = scopes
        return found

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        needed = SCOPE_BY_SERVICE.get(_service(handler_call_details.method))
        if needed is None:
            return continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        header = str(metadata.get("authorization", ""))
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _deny(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing bearer token: send metadata 'authorization: Bearer <token>'",
            )
        scopes = self.scopes_of(token.strip())
        if scopes is None:
            return _deny(grpc.StatusCode.UNAUTHENTICATED, "unknown token")
        if needed not in scopes:
            return _deny(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this token lacks the '{needed}' scope needed by "
                f"{_service(handler_call_details.method)}",
            )
        return continuation(handler_call_details)


class MetricsInterceptor(Interceptor):
    """Latency histogram per method and status code (unary RPCs)."""

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
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

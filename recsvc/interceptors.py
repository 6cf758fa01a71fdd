"""gRPC interceptors: bearer-token auth with scopes, and per-RPC metrics."""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from recsvc.ratelimit import Limit, RateLimiter
from recsvc.services import SCOPE_BY_SERVICE

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    Interceptor = grpc.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    Interceptor = grpc.ServerInterceptor


def _service(method: str) -> str:
    return method.rsplit("/", 2)[-2] if method.count("/") >= 2 else ""


def _deny(code: grpc.StatusCode, message: str, retry_after: float | None = None) -> Handler:
    def abort(request: Any, context: grpc.ServicerContext) -> Any:
        if retry_after is not None:  # whole seconds, as HTTP's Retry-After
            context.set_trailing_metadata((("retry-after", str(math.ceil(retry_after))),))
        context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(abort)


class AuthInterceptor(Interceptor):
    """`authorization: Bearer <token>` metadata, each token with its scopes."""

    def __init__(self, tokens: dict[str, frozenset[str]], rate_limit: Limit | None = None) -> None:
        self._tokens = [(t.encode(), scopes) for t, scopes in tokens.items()]
        self._limiter = RateLimiter(rate_limit) if rate_limit is not None else None

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
        headers = [
            str(value)
            for key, value in handler_call_details.invocation_metadata or ()
            if key == "authorization"
        ]
        if len(headers) > 1:
            # Which one would a proxy have checked? Refuse rather than guess.
            return _deny(
                grpc.StatusCode.UNAUTHENTICATED,
                f"{len(headers)} authorization headers; send exactly one",
            )
        header = headers[0] if headers else ""
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
        if self._limiter is not None:
            # Keyed by a digest: the limiter's table must not be a second copy of secrets.
            key = hashlib.blake2b(token.strip().encode(), digest_size=16).hexdigest()
            wait = self._limiter.acquire(key)
            if wait > 0:
                return _deny(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"rate limit of {self._limiter.limit.rate:g} calls/s for this token "
                    f"exceeded; retry after {wait:.2f} s",
                    retry_after=wait,
                )
        return continuation(handler_call_details)


@dataclass(frozen=True)
class _Undecodable:
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
            return _Undecodable(f"{type(exc).__name__}: {exc}"[:200])

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
                if isinstance(request, _Undecodable):
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

"""The RPC handlers of this process as the HTTP layer reaches them.

The servicers register here exactly as with the grpc.Server (``add_XServicer_to_server(
servicer, handlers)`` calls the same two methods on either), so an RPC added to the proto and
its servicer is served over HTTP with no route to write. Each call passes the server's own
interceptors in gRPC's order: auth (recsvc.auth) and metrics wrap the handler here as there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from recsvc.web.context import Metadata

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    Interceptor = grpc.ServerInterceptor[Any, Any]
    GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    Interceptor = grpc.ServerInterceptor
    GenericHandler = grpc.GenericRpcHandler


@dataclass(frozen=True)
class CallDetails:
    """grpc.HandlerCallDetails of an HTTP call."""

    method: str  # "/recsvc.v1.Recommender/RecommendProducts"
    invocation_metadata: Metadata


@dataclass(frozen=True)
class Method:
    path: str
    request: type[Message]
    response: type[Message]


@cache
def method_of(path: str) -> Method | None:
    """The message types of "/package.Service/Method" from the protobuf descriptors, or None
    when no loaded proto defines it (or it streams: HTTP serves unary RPCs)."""
    service, _, name = path.lstrip("/").partition("/")
    try:
        desc = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
    except KeyError:
        return None
    if desc.client_streaming or desc.server_streaming:
        return None
    return Method(path, GetMessageClass(desc.input_type), GetMessageClass(desc.output_type))


class Handlers:
    """A registry with the two methods generated ``add_*_to_server`` functions call."""

    def __init__(self, interceptors: Sequence[Interceptor] = ()) -> None:
        self._interceptors = list(interceptors)
        self._generic: list[GenericHandler] = []
        self.services: set[str] = set()

    def add_generic_rpc_handlers(self, handlers: Iterable[GenericHandler]) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, Handler]
    ) -> None:
        self.services.add(service_name)  # the handlers themselves come through the generic ones

    def _lookup(self, details: grpc.HandlerCallDetails) -> Handler | None:
        for generic in self._generic:
            handler = generic.service(details)
            if handler is not None:
                return handler
        return None

    def handler(self, method: str, metadata: Metadata) -> Handler | None:
        """The handler of ``method`` with every interceptor applied, as gRPC would run it
        (an interceptor may answer instead, e.g. auth with UNAUTHENTICATED), or None."""

        def step(index: int) -> Callable[[grpc.HandlerCallDetails], Handler | None]:
            if index == len(self._interceptors):
                return self._lookup
            interceptor = self._interceptors[index]
            return lambda d: interceptor.intercept_service(step(index + 1), d)

        return step(0)(CallDetails(method, metadata))  # type: ignore[arg-type]

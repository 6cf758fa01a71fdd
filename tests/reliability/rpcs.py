"""Every RPC of recsvc.v1, read from the proto's service descriptors (an RPC added to the
proto is covered by the suite without a new line here), called with raw bytes, and the
status codes docs/api.md documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor
from google.protobuf.message_factory import GetMessageClass

from recsvc.services import SCOPE_BY_SERVICE, SCOPES
from recsvc.v1 import recommender_pb2 as pb

Metadata = tuple[tuple[str, str], ...]

# One token per scope holding only that scope, and one holding every scope.
SCOPE_TOKENS = {scope: f"only-{scope}-reliability-token" for scope in SCOPES}
ROOT_TOKEN = "root-reliability-token"
TOKENS: dict[str, frozenset[str]] = {t: frozenset({s}) for s, t in SCOPE_TOKENS.items()}
TOKENS[ROOT_TOKEN] = frozenset(SCOPES)

# docs/api.md, "Status codes": everything recsvc answers. UNKNOWN and INTERNAL are bugs.
DOCUMENTED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


@dataclass(frozen=True)
class Rpc:
    service: str  # full name, e.g. recsvc.v1.Events
    name: str  # e.g. TrackEvents
    input: Descriptor

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def scope(self) -> str:
        return SCOPE_BY_SERVICE[self.service]

    @property
    def request_class(self) -> Any:
        return GetMessageClass(self.input)

    def __str__(self) -> str:
        return f"{self.service.rsplit('.', 1)[-1]}.{self.name}"


RPCS: tuple[Rpc, ...] = tuple(
    Rpc(service.full_name, method.name, method.input_type)
    for service in pb.DESCRIPTOR.services_by_name.values()
    for method in service.methods
)


@dataclass(frozen=True)
class Answer:
    code: grpc.StatusCode
    details: str
    trailing: Metadata
    reply: bytes | None

    @property
    def retry_after(self) -> str | None:
        return dict(self.trailing).get("retry-after")


def call(
    channel: grpc.Channel,
    rpc: Rpc | str,
    payload: bytes,
    metadata: Metadata,
    timeout: float = 10.0,
) -> Answer:
    """Send ``payload`` as it is (no serializer) to ``rpc``; the status whatever it is."""
    path = rpc.path if isinstance(rpc, Rpc) else rpc
    # No serializers: the bytes go out untouched and the reply comes back unparsed.
    method = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    try:
        reply, state = method.with_call(payload, metadata=metadata, timeout=timeout)
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        trailing = tuple((k, str(v)) for k, v in exc.trailing_metadata() or ())
        return Answer(exc.code(), exc.details() or "", trailing, None)
    trailing = tuple((k, str(v)) for k, v in state.trailing_metadata() or ())
    return Answer(grpc.StatusCode.OK, "", trailing, reply)

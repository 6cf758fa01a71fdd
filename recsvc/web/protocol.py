"""Wire formats of RPCs over HTTP: which protocol a request speaks, gRPC status codes as
Connect error codes and HTTP statuses, JSON error bodies, gRPC-Web framing and deadlines.

References: the Connect protocol (connectrpc.com/docs/protocol: unary requests, error codes
and their HTTP statuses) and gRPC-Web (github.com/grpc/grpc, doc/PROTOCOL-WEB.md).
"""

from __future__ import annotations

import base64
import binascii
import struct
from enum import Enum

import grpc
import orjson

from recsvc.web.context import Metadata


class Protocol(Enum):
    CONNECT_JSON = "connect-json"  # application/json
    CONNECT_PROTO = "connect-proto"  # application/proto
    GRPC_WEB = "grpc-web"  # application/grpc-web, application/grpc-web+proto
    GRPC_WEB_TEXT = "grpc-web-text"  # the same frames in base64

    @property
    def grpc_web(self) -> bool:
        return self in (Protocol.GRPC_WEB, Protocol.GRPC_WEB_TEXT)


_CONTENT_TYPES = {
    "application/json": Protocol.CONNECT_JSON,
    "application/proto": Protocol.CONNECT_PROTO,
    "application/grpc-web": Protocol.GRPC_WEB,
    "application/grpc-web+proto": Protocol.GRPC_WEB,
    "application/grpc-web-text": Protocol.GRPC_WEB_TEXT,
    "application/grpc-web-text+proto": Protocol.GRPC_WEB_TEXT,
}
CONTENT_TYPES = tuple(_CONTENT_TYPES)


def protocol_of(content_type: str) -> Protocol | None:
    """The protocol a Content-Type names (parameters such as charset ignored), or None."""
    return _CONTENT_TYPES.get(content_type.partition(";")[0].strip().lower())


def content_type(protocol: Protocol) -> str:
    return {
        Protocol.CONNECT_JSON: "application/json",
        Protocol.CONNECT_PROTO: "application/proto",
        Protocol.GRPC_WEB: "application/grpc-web+proto",
        Protocol.GRPC_WEB_TEXT: "application/grpc-web-text+proto",
    }[protocol]


# -- status codes ------------------------------------------------------------------------------

# The Connect protocol's HTTP status for each code (its "Error Codes" table).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


def connect_code(code: grpc.StatusCode) -> str:
    """Connect's name of a code: lower snake case, and "canceled" with one l."""
    return "canceled" if code is grpc.StatusCode.CANCELLED else code.name.lower()


def error_json(code: grpc.StatusCode, message: str) -> bytes:
    """The Connect error body: {"code": "permission_denied", "message": "..."}."""
    return orjson.dumps({"code": connect_code(code), "message": message})


class Failure(Exception):
    """A call that fails before any handler runs (bad framing, unknown method, overload)."""

    def __init__(self, code: grpc.StatusCode, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status  # instead of the code's own, e.g. 404 for unknown paths


# -- gRPC-Web framing ----------------------------------------------------------------------------

_DATA, _TRAILERS, _COMPRESSED = 0x00, 0x80, 0x01


def frame(data: bytes, trailers: bool = False) -> bytes:
    return struct.pack(">BI", _TRAILERS if trailers else _DATA, len(data)) + data


def unframe(body: bytes, text: bool) -> bytes:
    """The one request message of a unary gRPC-Web body."""
    if text:
        try:
            body = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise Failure(
                grpc.StatusCode.INVALID_ARGUMENT, "grpc-web-text body is not base64"
            ) from None
    if len(body) < 5:
        raise Failure(
            grpc.StatusCode.INVALID_ARGUMENT,
            "gRPC-Web body too short: expected a 5-byte frame header and the message",
        )
    flags, length = struct.unpack(">BI", body[:5])
    if flags & _COMPRESSED:
        raise Failure(
            grpc.StatusCode.UNIMPLEMENTED, "compressed gRPC-Web messages are not supported"
        )
    if flags != _DATA or len(body) != 5 + length:
        raise Failure(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"gRPC-Web body of {len(body)} bytes is not one message frame of {length} bytes",
        )
    return body[5:]


def percent_encode(message: str) -> str:
    """grpc-message encoding: printable ASCII stays, everything else (and %) as %XX of UTF-8."""
    out = []
    for ch in message:
        if " " <= ch <= "~" and ch != "%":
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode())
    return "".join(out)


def trailers(code: grpc.StatusCode, message: str, metadata: Metadata) -> bytes:
    """The trailers frame's payload: HTTP/1 header lines of status, message and metadata."""
    lines = [f"grpc-status: {code.value[0]}"]
    if message:
        lines.append(f"grpc-message: {percent_encode(message)}")
    lines.extend(f"{key}: {header_value(value)}" for key, value in metadata)
    return ("\r\n".join(lines) + "\r\n").encode()


def header_value(value: str | bytes) -> str:
    """Metadata as a header value: "-bin" values travel as base64."""
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


# -- deadlines ------------------------------------------------------------------------------------

_GRPC_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def timeout_seconds(connect_ms: str | None, grpc_timeout: str | None) -> float | None:
    """The caller's deadline from Connect-Timeout-Ms (Connect) or grpc-timeout (gRPC-Web)."""
    if connect_ms is not None:
        if not connect_ms.isdigit() or len(connect_ms) > 10:
            raise Failure(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Connect-Timeout-Ms {connect_ms!r}: expected at most 10 digits (milliseconds)",
            )
        return int(connect_ms) / 1000
    if grpc_timeout is not None:
        amount, unit = grpc_timeout[:-1], grpc_timeout[-1:]
        if not amount.isdigit() or len(amount) > 8 or unit not in _GRPC_UNITS:
            raise Failure(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"grpc-timeout {grpc_timeout!r}: expected up to 8 digits and a unit of H M S m u n",
            )
        return int(amount) * _GRPC_UNITS[unit]
    return None

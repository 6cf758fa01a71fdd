"""POST /<package.Service>/<Method>: one unary RPC over HTTP, in the Connect protocol (JSON or
binary protobuf) or gRPC-Web, answered by the gRPC handler of that method.

The handler (interceptors included) runs on the server's request threads, as over gRPC.
Requests in JSON follow protobuf's JSON mapping (proto3 JSON; unknown fields ignored, as the
binary format does); responses use its canonical form (lowerCamelCase names, defaults left
out), both through recsvc.web.jsoncodec.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from recsvc.interceptors import Undecodable
from recsvc.web import jsoncodec
from recsvc.web.context import Aborted, HttpContext, Metadata
from recsvc.web.handlers import Handler, Handlers, method_of
from recsvc.web.jsoncodec import JsonError
from recsvc.web.protocol import (
    CONTENT_TYPES,
    HTTP_STATUS,
    Failure,
    Protocol,
    content_type,
    error_json,
    frame,
    header_value,
    protocol_of,
    timeout_seconds,
    trailers,
    unframe,
)

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
MAX_BODY = 4 * 1024 * 1024  # gRPC's default limit on a received message


def is_rpc_path(path: str) -> bool:
    """ "/package.Service/Method": two segments, the first a dotted service name."""
    parts = path.split("/")
    return len(parts) == 3 and not parts[0] and "." in parts[1] and bool(parts[2])


def peer_of(scope: Scope) -> str:
    """The client as grpc names peers ("ipv4:1.2.3.4:5678"), from the ASGI scope (which
    uvicorn rewrites from X-Forwarded-For when the proxy is trusted)."""
    client = scope.get("client")
    if not client:
        return "unix:"
    host, port = client[0], client[1]
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def metadata_of(scope: Scope) -> Metadata:
    """Request headers as gRPC metadata (lower-case keys; "-bin" values decoded)."""
    out: list[tuple[str, str | bytes]] = []
    for raw_key, raw_value in scope["headers"]:
        key = raw_key.decode("latin-1").lower()
        if key.endswith("-bin"):
            try:
                out.append((key, base64.b64decode(raw_value + b"==")))
            except ValueError:
                continue
        else:
            out.append((key, raw_value.decode("latin-1")))
    return tuple(out)


@dataclass
class Outcome:
    code: grpc.StatusCode
    message: str
    body: bytes | None  # the response, encoded for the protocol (None: an error)
    initial: Metadata
    trailing: Metadata


class RpcEndpoint:
    """The ASGI app of RPC paths."""

    def __init__(self, handlers: Handlers, executor: Executor, max_in_flight: int) -> None:
        self.handlers = handlers
        self.executor = executor
        self.max_in_flight = max_in_flight  # as grpc's maximum_concurrent_rpcs
        self.in_flight = 0  # touched only on the event loop's thread

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metadata = metadata_of(scope)
        headers = dict(metadata)
        protocol = protocol_of(str(headers.get("content-type", "")))
        try:
            if scope["method"] != "POST":
                raise Failure(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{scope['method']} {scope['path']}: RPCs are called with POST",
                    http_status=405,
                )
            if protocol is None:
                raise Failure(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"Content-Type {headers.get('content-type', '(none)')!r} is not served; "
                    f"use one of {', '.join(CONTENT_TYPES)}",
                    http_status=415,
                )
            outcome = await self._call(scope, receive, protocol, metadata)
        except Failure as exc:
            protocol = protocol or Protocol.CONNECT_JSON
            if exc.http_status is not None and not protocol.grpc_web:
                await _send(
                    send, exc.http_status, "application/json", error_json(exc.code, exc.message)
                )
                return
            outcome = Outcome(exc.code, exc.message, None, (), ())
        if protocol.grpc_web:
            await self._send_grpc_web(send, protocol, outcome)
        else:
            await self._send_connect(send, protocol, outcome)

    async def _call(
        self, scope: Scope, receive: Receive, protocol: Protocol, metadata: Metadata
    ) -> Outcome:
        path = scope["path"]
        method = method_of(path)
        if (
            method is None
            or method.path.lstrip("/").partition("/")[0] not in self.handlers.services
        ):
            raise Failure(
                grpc.StatusCode.UNIMPLEMENTED,
                f"no unary RPC {path.lstrip('/')} on this server",
                http_status=404,
            )
        body = await _read_body(receive)
        headers = dict(metadata)
        timeout = timeout_seconds(
            _text(headers.get("connect-timeout-ms")), _text(headers.get("grpc-timeout"))
        )
        if self.in_flight >= self.max_in_flight:
            raise Failure(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the server holds {self.max_in_flight} calls at once; retry shortly",
            )
        context = HttpContext(metadata, peer_of(scope), timeout)
        self.in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self.executor,
                _run,
                self.handlers,
                method.path,
                method.request,
                protocol,
                body,
                context,
            )
        finally:
            self.in_flight -= 1

    async def _send_connect(self, send: Send, protocol: Protocol, outcome: Outcome) -> None:
        headers = [(k, header_value(v)) for k, v in outcome.initial]
        headers += [(f"trailer-{k}", header_value(v)) for k, v in outcome.trailing]
        if outcome.code is grpc.StatusCode.OK and outcome.body is not None:
            await _send(send, 200, content_type(protocol), outcome.body, headers)
            return
        headers += [("retry-after", str(v)) for k, v in outcome.trailing if k == "retry-after"]
        await _send(
            send,
            HTTP_STATUS.get(outcome.code, 500),
            "application/json",  # Connect errors are JSON whatever the request's codec
            error_json(outcome.code, outcome.message),
            headers,
        )

    async def _send_grpc_web(self, send: Send, protocol: Protocol, outcome: Outcome) -> None:
        body = b""
        if outcome.code is grpc.StatusCode.OK and outcome.body is not None:
            body = frame(outcome.body)
        body += frame(trailers(outcome.code, outcome.message, outcome.trailing), trailers=True)
        if protocol is Protocol.GRPC_WEB_TEXT:
            body = base64.b64encode(body)
        headers = [(k, header_value(v)) for k, v in outcome.initial]
        await _send(send, 200, content_type(protocol), body, headers)


def _run(
    handlers: Handlers,
    path: str,
    request_type: type[Message],
    protocol: Protocol,
    body: bytes,
    context: HttpContext,
) -> Outcome:
    """On a request thread: find the handler through the interceptors, decode, call, encode
    (the event loop only moves bytes)."""
    encoded = None
    try:
        handler = handlers.handler(path, context.invocation_metadata())
        if handler is None or handler.unary_unary is None:
            raise Failure(grpc.StatusCode.UNIMPLEMENTED, f"{path.lstrip('/')} is not served")
        request = _decode(handler, request_type, protocol, body)
        response = handler.unary_unary(request, context)
        code = context.code() or grpc.StatusCode.OK
        if code is grpc.StatusCode.OK and response is not None:
            if protocol is Protocol.CONNECT_JSON:
                encoded = jsoncodec.to_json(response)
            else:
                encoded = response.SerializeToString()
    except Aborted:
        code = context.code() or grpc.StatusCode.UNKNOWN
    except Failure as exc:
        return Outcome(exc.code, exc.message, None, (), ())
    except Exception as exc:
        # grpc answers UNKNOWN here too; the log has the traceback.
        log.exception("exception calling %s over HTTP", path)
        return Outcome(
            grpc.StatusCode.UNKNOWN, f"Exception calling application: {exc}", None, (), ()
        )
    return Outcome(
        code, context.details(), encoded, context.initial_metadata(), context.trailing_metadata()
    )


def _decode(handler: Handler, request_type: type[Message], protocol: Protocol, body: bytes) -> Any:
    if handler.request_deserializer is None:
        return body  # an interceptor's refusal, which reads nothing
    if protocol.grpc_web:
        body = unframe(body, text=protocol is Protocol.GRPC_WEB_TEXT)
    if protocol is not Protocol.CONNECT_JSON:
        return handler.request_deserializer(body)  # the server's own (lenient) parser
    try:
        return jsoncodec.parse(body, request_type)
    except JsonError as exc:
        # The metrics interceptor answers INVALID_ARGUMENT, as for bad binary requests.
        return Undecodable(str(exc)[:200])


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Failure(grpc.StatusCode.CANCELLED, "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise Failure(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request body over {MAX_BODY} bytes",
                http_status=413,
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


async def _send(
    send: Send,
    status: int,
    media_type: str,
    body: bytes,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    raw = [
        (b"content-type", media_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers or ()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})

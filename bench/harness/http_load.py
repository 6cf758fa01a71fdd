"""HTTP/1.1 callers for the load generator: one keep-alive connection per caller (HTTP/1.1
has one call in flight per connection), requests built to the byte before the window, answers
read by Content-Length and left unparsed: the client spends as little as the gRPC one does,
so the two protocols are compared on the server's work."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from google.protobuf import json_format

from recsvc.v1 import recommender_pb2 as pb


class HttpFailed(Exception):
    """A call answered with another status than 200 (the status is the error's name)."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def json_bodies(requests: list[bytes]) -> list[bytes]:
    """Serialized RecommendProductsRequests as proto3 JSON bodies (the same requests)."""
    return [
        json.dumps(
            json_format.MessageToDict(pb.RecommendProductsRequest.FromString(r)),
            separators=(",", ":"),
        ).encode()
        for r in requests
    ]


def build_requests(host: str, path: str, token: str, bodies: list[bytes]) -> list[bytes]:
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {token}\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]


@dataclass
class HttpConnection:
    host: str
    port: int
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def call(self, request: bytes) -> bytes:
        """Send one pre-built request; the answer's body. Reconnects once if the server
        closed the idle connection (keep-alive timeout)."""
        for attempt in (0, 1):
            if self.writer is None:
                await self._open()
            reader, writer = self.reader, self.writer
            assert reader is not None and writer is not None
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                break
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        status = head[9:12].decode()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        assert reader is not None
        body = await reader.readexactly(length)
        if status != "200":
            raise HttpFailed(f"HTTP {status}")
        return body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

"""A grpc.ServicerContext for a call that came over HTTP: what the servicers and interceptors
use of a context (abort, codes, deadline, metadata, peer) behaves as on the gRPC server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NoReturn

import grpc

Metadata = tuple[tuple[str, str | bytes], ...]


class Aborted(Exception):
    """Raised by :meth:`HttpContext.abort`, as grpc's own context raises to end the call."""


class HttpContext(grpc.ServicerContext):
    def __init__(self, metadata: Metadata, peer: str, timeout: float | None = None) -> None:
        self._metadata = metadata
        self._peer = peer
        self._deadline = time.monotonic() + timeout if timeout is not None else None
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._initial: Metadata = ()
        self._trailing: Metadata = ()

    # -- what the call reads ---------------------------------------------------------------
    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def peer(self) -> str:
        """ "ipv4:1.2.3.4:5678" or "ipv6:[::1]:5678", as grpc writes peers."""
        return self._peer

    def time_remaining(self) -> float | None:  # type: ignore[override]  # None: no deadline
        return None if self._deadline is None else self._deadline - time.monotonic()

    def is_active(self) -> bool:
        return self._deadline is None or time.monotonic() < self._deadline

    def auth_context(self) -> dict[str, bytes]:
        return {}

    def peer_identities(self) -> None:
        return None

    def peer_identity_key(self) -> None:
        return None

    # -- how it ends ---------------------------------------------------------------------------
    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        if code is grpc.StatusCode.OK:
            raise ValueError("abort needs an error code, not OK")
        self._code, self._details = code, details
        raise Aborted(details)

    def abort_with_status(self, status: grpc.Status) -> NoReturn:
        self._trailing += tuple(status.trailing_metadata or ())
        self.abort(status.code, status.details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def send_initial_metadata(self, initial_metadata: Metadata) -> None:
        self._initial = tuple(initial_metadata)

    def initial_metadata(self) -> Metadata:
        return self._initial

    def set_trailing_metadata(self, trailing_metadata: Metadata) -> None:
        self._trailing = tuple(trailing_metadata)

    def trailing_metadata(self) -> Metadata:
        return self._trailing

    # -- transport knobs with nothing to do over HTTP/1.1 ----------------------------------------
    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False  # like grpc's context once the call is over: the callback is not kept

    def cancel(self) -> None:
        pass

    def set_compression(self, compression: grpc.Compression) -> None:
        pass

    def disable_next_message_compression(self) -> None:
        pass

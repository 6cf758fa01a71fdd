"""Who may call what: bearer tokens with scopes, the `public` scope's rules, and rate limits
per token and per client address. Plain decisions, no transport: the gRPC interceptor and
the HTTP layer both ask this one object, so both answer the same way.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from recsvc.convert import EVENT_TYPE_NAMES
from recsvc.ratelimit import Limit, RateLimiter
from recsvc.services import (
    PUBLIC,
    PUBLIC_EVENT_TYPES,
    PUBLIC_TRACKING,
    SCOPE_BY_SERVICE,
    public_may_call,
)

Metadata = Iterable[tuple[str, Any]]


@dataclass(frozen=True)
class Denied:
    code: grpc.StatusCode
    message: str
    retry_after: float | None = None  # seconds, for RESOURCE_EXHAUSTED


@dataclass(frozen=True)
class Granted:
    public: bool = False  # granted by the `public` scope alone: the public rules apply


OPEN = Granted()


def service_of(method: str) -> str:
    """ "recsvc.v1.Recommender" of "/recsvc.v1.Recommender/RecommendProducts"."""
    return method.rsplit("/", 2)[-2] if method.count("/") >= 2 else ""


def client_address(peer: str) -> str:
    """The address part of a gRPC peer string: "ipv4:1.2.3.4:5678" -> "1.2.3.4",
    "ipv6:[::1]:5678" -> "::1"; anything else (unix sockets) as it is."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return peer


def _limited(limiter: RateLimiter, key: str, whose: str) -> Denied | None:
    """RESOURCE_EXHAUSTED when ``key`` is past the limiter's rate, else None (call counted)."""
    wait = limiter.acquire(key)
    if wait <= 0:
        return None
    return Denied(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"rate limit of {limiter.limit.rate:g} calls/s {whose} exceeded; retry after {wait:.2f} s",
        retry_after=wait,
    )


class Auth:
    """Tokens and their scopes, and the rate limiters of this process."""

    def __init__(
        self,
        tokens: dict[str, frozenset[str]],
        rate_limit: Limit | None = None,
        address_limit: Limit | None = None,
    ) -> None:
        self._tokens = [(t.encode(), scopes) for t, scopes in tokens.items()]
        self._per_token = RateLimiter(rate_limit) if rate_limit is not None else None
        self._per_address = RateLimiter(address_limit) if address_limit is not None else None

    def scopes_of(self, token: str) -> frozenset[str] | None:
        presented = token.encode()
        found: frozenset[str] | None = None
        for known, scopes in self._tokens:  # no early exit: time does not depend on the match
            if hmac.compare_digest(presented, known):
                found = scopes
        return found

    def check(self, method: str, metadata: Metadata | None) -> Denied | Granted:
        """May this call of ``method`` ("/package.Service/Method") start? Checked before the
        request is read; a public grant still needs :meth:`check_public`."""
        service = service_of(method)
        needed = SCOPE_BY_SERVICE.get(service)
        if needed is None:
            return OPEN
        return self.check_scope(needed, service, metadata, public_ok=public_may_call(method))

    def check_scope(
        self, needed: str, what: str, metadata: Metadata | None, public_ok: bool = False
    ) -> Denied | Granted:
        """The bearer token of ``metadata`` must have scope ``needed`` (or `public`, when
        ``public_ok``) and be within its rate limit; ``what`` names the thing in messages."""
        headers = [str(value) for key, value in metadata or () if key == "authorization"]
        if len(headers) > 1:
            # Which one would a proxy have checked? Refuse rather than guess.
            return Denied(
                grpc.StatusCode.UNAUTHENTICATED,
                f"{len(headers)} authorization headers; send exactly one",
            )
        header = headers[0] if headers else ""
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return Denied(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing bearer token: send metadata 'authorization: Bearer <token>'",
            )
        scopes = self.scopes_of(token)
        if scopes is None:
            return Denied(grpc.StatusCode.UNAUTHENTICATED, "unknown token")
        public = needed not in scopes and public_ok and PUBLIC in scopes
        if needed not in scopes and not public:
            extra = " (a public token may not call it)" if PUBLIC in scopes else ""
            return Denied(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this token lacks the '{needed}' scope needed by {what}{extra}",
            )
        if self._per_token is not None:
            # Keyed by a digest: the limiter's table must not be a second copy of secrets.
            key = hashlib.blake2b(token.encode(), digest_size=16).hexdigest()
            if denied := _limited(self._per_token, key, "for this token"):
                return denied
        return Granted(public=public)

    def check_public(self, method: str, request: Any, address: str) -> Denied | None:
        """The rules of a call granted by the `public` scope, once the request is read: the
        client address's rate limit, then the event types TrackEvents may carry."""
        if self._per_address is not None:
            denied = _limited(self._per_address, address, "per client address for public tokens")
            if denied:
                return denied
        if method.lstrip("/") == PUBLIC_TRACKING:
            names = {EVENT_TYPE_NAMES.get(e.type, "") for e in request.events}
            # Unknown types are left to validation, which rejects those events one by one.
            refused = sorted(n for n in names if n and n not in PUBLIC_EVENT_TYPES)
            if refused:
                return Denied(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"a public token may not track {', '.join(refused)} events (only "
                    f"{', '.join(sorted(PUBLIC_EVENT_TYPES))}); send them from your backend "
                    "with an 'events' token",
                )
        return None

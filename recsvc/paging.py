"""Page tokens of RecommendProducts: opaque, tamper-evident, bound to one request.

A token is base64url of: format version, a random session id (names the set of shown products
in the feature store, ``feature_store.pages``), the page number, the expiry (Unix seconds), a
digest of the request it continues (customer, filter, context), optionally the ids of the
products shown so far (the first page's, so that an answer nobody pages through writes nothing
to Redis), and an HMAC-SHA256 (first 16 bytes) over all of that with the server key
(RECSVC_PAGE_TOKEN_KEY): 47 bytes without ids. Every worker and replica with the same key and
Redis continues any token. A token that fails any check is refused with InvalidRequest saying
to start again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import time
from dataclasses import dataclass

from formats.errors import InvalidRequest
from formats.types import Context, Filter

_VERSION = 1
_BODY = struct.Struct(">B16sHI8s")  # version, session, page, expires, request digest
_MAC = 16
_ID_LENGTH = struct.Struct(">H")
MAX_SHOWN_BYTES = 1024  # ids carried in a token at most; beyond, they go to the feature store
START_AGAIN = "start again: send the request without page_token"


@dataclass(frozen=True)
class Page:
    session: str  # hex; names the shown-products set
    page: int  # the page this token asks for (2 = the second)
    shown: tuple[str, ...] = ()  # products shown before, carried in the token (page 2)


def _pack_ids(ids: tuple[str, ...]) -> bytes:
    return b"".join(_ID_LENGTH.pack(len(e)) + e for e in (i.encode() for i in ids))


def _unpack_ids(blob: bytes) -> tuple[str, ...] | None:
    """The ids of ``_pack_ids``, or None when ``blob`` is not such a list."""
    ids, at = [], 0
    while at < len(blob):
        if at + _ID_LENGTH.size > len(blob):
            return None
        (n,) = _ID_LENGTH.unpack_from(blob, at)
        at += _ID_LENGTH.size
        if at + n > len(blob):
            return None
        ids.append(blob[at : at + n].decode(errors="replace"))
        at += n
    return tuple(ids)


def fits_in_token(ids: tuple[str, ...]) -> bool:
    return sum(_ID_LENGTH.size + len(i.encode()) for i in ids) <= MAX_SHOWN_BYTES


def request_digest(customer_id: str, filter: Filter, context: Context) -> bytes:
    """What must stay the same from page to page (limit may change, as AIP-158 allows)."""
    parts = (
        customer_id,
        sorted(filter.include_categories),
        sorted(filter.exclude_categories),
        sorted(filter.exclude_product_ids),
        filter.in_stock_only,
        filter.min_price,
        filter.max_price,
        filter.include_purchased,
        filter.max_per_category,
        context.surface,
        context.device,
        context.current_product_id,
    )
    return hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()


class PageTokens:
    def __init__(self, key: bytes, ttl_s: int) -> None:
        if len(key) < 16:
            raise ValueError("the page token key must be at least 16 bytes")
        self._key = key
        self.ttl_s = ttl_s

    def new_session(self) -> str:
        return secrets.token_hex(16)

    def issue(
        self,
        session: str,
        page: int,
        request: bytes,
        now: float | None = None,
        shown: tuple[str, ...] = (),
    ) -> str:
        """A token for ``page``; ``shown``: products to carry in it (see ``fits_in_token``)."""
        expires = int(now if now is not None else time.time()) + self.ttl_s
        body = _BODY.pack(_VERSION, bytes.fromhex(session), page, expires, request)
        body += _pack_ids(shown)
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC]
        return base64.urlsafe_b64encode(body + mac).decode().rstrip("=")

    def open(self, token: str, request: bytes, now: float | None = None) -> Page:
        """The page ``token`` asks for, or InvalidRequest (forged, altered, expired, or issued
        for another request)."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) < _BODY.size + _MAC:
            raise InvalidRequest(f"page_token is not a token of this server; {START_AGAIN}")
        body, mac = raw[:-_MAC], raw[-_MAC:]
        expected = hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC]
        if not hmac.compare_digest(mac, expected):
            raise InvalidRequest(
                f"page_token is not valid (altered, or signed with another key); {START_AGAIN}"
            )
        version, session, page, expires, digest = _BODY.unpack(body[: _BODY.size])
        shown = _unpack_ids(body[_BODY.size :])
        if version != _VERSION or shown is None:
            raise InvalidRequest(f"page_token is of an unknown format; {START_AGAIN}")
        if expires < (now if now is not None else time.time()):
            raise InvalidRequest(
                f"page_token expired (pages are kept {self.ttl_s // 60} minutes after the last "
                f"one); {START_AGAIN}"
            )
        if not hmac.compare_digest(digest, request):
            raise InvalidRequest(
                "page_token belongs to another request (customer_id, filter and context must "
                f"stay the same from page to page; limit may change); {START_AGAIN}"
            )
        return Page(session.hex(), page, shown)

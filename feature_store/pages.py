"""The products a paged RecommendProducts list has shown, so the next page (on any worker or
replica sharing this Redis) repeats none of them. Key: ``Keys.page_shown``."""

from __future__ import annotations

from collections.abc import Iterable

from feature_store.store import FeatureStore, as_text


def shown(store: FeatureStore, session: str) -> frozenset[str]:
    """Products shown under ``session`` (empty: none, or expired). One round trip."""
    return frozenset(as_text(p) for p in store.reader.smembers(store.keys.page_shown(session)))


def add_shown(store: FeatureStore, session: str, product_ids: Iterable[str], ttl_s: int) -> None:
    """Record products as shown and keep the set ``ttl_s`` more seconds. One round trip."""
    ids = list(product_ids)
    if not ids:
        return
    key = store.keys.page_shown(session)
    pipe = store.reader.pipeline(transaction=False)
    pipe.sadd(key, *ids)
    pipe.expire(key, ttl_s)
    pipe.execute()

"""Data-protection requests in Redis: export everything held on a customer (right of
access), forget them (erasure), and the tombstones that keep them out of exports and training.
Keys are described in docs/feature-store.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from feature_store.offer_usage import offer_state, offers_with_usage, today
from feature_store.store import FeatureStore, as_text
from formats.events import decode


def tombstones(store: FeatureStore) -> dict[str, int]:
    """Forgotten customers -> when (Unix ms)."""
    raw = store.writer.hgetall(store.keys.tombstones)
    return {as_text(a): int(b) for a, b in raw.items()}


def _customer_events(store: FeatureStore, customer_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(stream id, event) of the customer still in the stream: a full scan, in chunks."""
    found: list[tuple[str, dict[str, Any]]] = []
    start = "-"
    while True:
        chunk = store.writer.xrange(store.keys.stream, min=start, count=10_000)
        if not chunk:
            return found
        for sid, fields in chunk:
            event = decode(fields[b"e"])
            if event.customer_id == customer_id:
                found.append((as_text(sid), asdict(event)))
        start = "(" + as_text(chunk[-1][0])


def _customer_keys(store: FeatureStore, customer_id: str) -> list[str]:
    """Every key of the customer: real time, loyalty, loaded profile, offer impressions."""
    k = store.keys
    gen = store.live_generation()
    keys = [*k.customer_keys(customer_id), k.loyalty(customer_id)]
    if gen is not None:
        keys.append(k.profile(gen, customer_id))
    now = datetime.now(UTC)
    # Impression counters live OFFER_DAY_TTL (two days): today's, yesterday's, tomorrow's (UTC).
    for days in (-1, 0, 1):
        keys.append(k.offer_impressions(customer_id, today(now + timedelta(days=days))))
    return keys


def export_customer(store: FeatureStore, customer_id: str, offer_ids: list[str]) -> dict[str, Any]:
    """Everything held on the customer (right of access)."""
    activity = store.activity(customer_id)
    usages, _ = offer_state(store, customer_id, offers_with_usage(store, offer_ids))
    return {
        "customer_id": customer_id,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": activity.profile,
        "loyalty": activity.loyalty,
        "activity": {
            "counters": activity.counters,
            "recent": [asdict(e) for e in activity.recent],
            "purchased": sorted(activity.purchased),
        },
        "offers": {o: asdict(u) for o, u in usages.items() if u.redemptions or u.impressions_today},
        "events": [{"stream_id": sid, **e} for sid, e in _customer_events(store, customer_id)],
        "forgotten_at": tombstones(store).get(customer_id),
    }


@dataclass(frozen=True)
class ForgetReport:
    keys_removed: int
    events_removed: int


def forget(store: FeatureStore, customer_id: str, offer_ids: list[str]) -> ForgetReport:
    """Delete every key of the customer, their stream entries and dedupe keys, their offer
    usage, and tombstone them (first, so an export running meanwhile already skips them)."""
    k = store.keys
    w = store.writer
    w.hset(k.tombstones, customer_id, int(datetime.now(UTC).timestamp() * 1000))
    events = _customer_events(store, customer_id)
    keys = _customer_keys(store, customer_id)
    pipe = w.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    offer_ids = offers_with_usage(store, offer_ids)
    for offer in offer_ids:
        pipe.hdel(k.offer_usage(offer), f"c:{customer_id}")
    for sid, event in events:
        pipe.xdel(k.stream, sid)
        pipe.unlink(k.dedupe(str(event["event_id"])))
    results = pipe.execute()
    removed_keys = sum(int(r) for r in results[: len(keys)])
    removed_events = sum(int(r) for r in results[len(keys) + len(offer_ids) :: 2])
    return ForgetReport(removed_keys, removed_events)


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)

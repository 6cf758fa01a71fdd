"""The event record: its types, its validation, and its encoding in the Redis stream.

The stream entry has one field, ``e``: compact JSON with short keys (see ``encode``), read
back by ``decode`` (the exporter) and documented in docs/feature-store.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from formats.ids import MAX_ID_LENGTH, id_problem
from formats.limits import MAX_AMOUNT, MAX_FUTURE_MS, MAX_QUANTITY

EVENT_TYPES: tuple[str, ...] = (
    "view",
    "click",
    "add_to_cart",
    "purchase",
    "rec_impression",
    "rec_click",
    "offer_impression",
    "offer_click",
    "offer_redeemed",
)
# The event types of interaction files (training input and `recsvc events export` output);
# codes in training arrays index this tuple, and event weights are keyed by it.
INTERACTION_TYPES: tuple[str, ...] = ("purchase", "add_to_cart", "click", "view")
PRODUCT_EVENTS = frozenset(EVENT_TYPES[:6])
OFFER_EVENTS = frozenset(EVENT_TYPES[6:])
# Product events that show interest (and so enter the customer's recent products), mapped to
# their interaction type; a recommended product merely shown (rec_impression) does not count.
INTEREST = {
    "view": "view",
    "click": "click",
    "rec_click": "click",
    "add_to_cart": "add_to_cart",
    "purchase": "purchase",
}

# Written by the server, never sent by clients: a promoted item in an answer (customer,
# product, recommendation_id, promotion_id), so reports can attribute events to promotions.
SERVED = "promotion_served"

MIN_TS_MS = 946_684_800_000  # 2000-01-01: older timestamps are client bugs
INVALID_TS_MS = -(2**63)  # a timestamp that is not a time at all (e.g. negative nanos)


@dataclass(frozen=True)
class Event:
    event_id: str
    customer_id: str
    type: str
    product_id: str = ""
    offer_id: str = ""
    ts_ms: int = 0  # Unix milliseconds; 0 = not given (the server fills in its clock)
    quantity: float = 0.0  # 0 = 1
    amount: float = 0.0
    recommendation_id: str = ""
    promotion_id: str = ""  # promotion_served records only


def check(event: Event, now_ms: int) -> str | None:
    """Why ``event`` cannot be accepted, or None when it can."""
    for name in ("event_id", "customer_id"):
        problem = id_problem(getattr(event, name), name)
        if problem:
            return problem
    if event.type not in EVENT_TYPES:
        return f"type is unspecified or unknown; use one of {', '.join(EVENT_TYPES)}"
    if event.type in PRODUCT_EVENTS and not event.product_id.strip():
        return f"a {event.type} event needs product_id"
    if event.type in OFFER_EVENTS and not event.offer_id.strip():
        return f"a {event.type} event needs offer_id"
    for name in ("product_id", "offer_id", "recommendation_id"):
        value = getattr(event, name)
        if len(value) > MAX_ID_LENGTH:
            return f"{name} is {len(value)} characters long; the maximum is {MAX_ID_LENGTH}"
    for name, limit in (("quantity", MAX_QUANTITY), ("amount", MAX_AMOUNT)):
        value = getattr(event, name)
        if not math.isfinite(value) or value < 0:
            return f"{name} {value} is not a finite number >= 0"
        if value > limit:
            return f"{name} {value:g} is above the maximum {limit:g}"
    if event.ts_ms == INVALID_TS_MS:
        return (
            "timestamp is not a valid time: seconds must lie within years 1-9999 and nanos "
            "within 0-999,999,999"
        )
    if event.ts_ms and event.ts_ms < MIN_TS_MS:
        return "timestamp is before 2000-01-01"
    if event.ts_ms > now_ms + MAX_FUTURE_MS:
        return "timestamp is more than 5 minutes in the future"
    return None


def encode(event: Event) -> str:
    record: dict[str, Any] = {
        "id": event.event_id,
        "c": event.customer_id,
        "t": event.type,
        "ts": event.ts_ms,
    }
    optional = (
        ("p", event.product_id),
        ("o", event.offer_id),
        ("q", event.quantity),
        ("a", event.amount),
        ("r", event.recommendation_id),
        ("pr", event.promotion_id),
    )
    record.update({k: v for k, v in optional if v})
    return orjson.dumps(record).decode()


def decode(payload: str | bytes) -> Event:
    r = orjson.loads(payload)
    return Event(
        event_id=r["id"],
        customer_id=r["c"],
        type=r["t"],
        product_id=r.get("p", ""),
        offer_id=r.get("o", ""),
        ts_ms=int(r["ts"]),
        quantity=float(r.get("q", 0.0)),
        amount=float(r.get("a", 0.0)),
        recommendation_id=r.get("r", ""),
        promotion_id=r.get("pr", ""),
    )

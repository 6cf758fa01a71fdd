"""Protobuf messages to the plain types of ``formats.types`` and back: the one place that
knows both, used by the servicers (requests in) and the client (requests out)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from formats.events import INVALID_TS_MS, Event
from formats.types import AttributeCondition, Context, EventResult, Filter, Item, ProductChange
from recsvc.v1 import recommender_pb2 as pb


def _enum_names(enum: Any, prefix: str) -> dict[Any, str]:
    """``{EVENT_TYPE_ADD_TO_CART: "add_to_cart", ...}``: the proto enum is the one list."""
    return {code: name.removeprefix(prefix).lower() for name, code in enum.items() if code}


# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
MIN_SECONDS = -62_135_596_800
MAX_SECONDS = 253_402_300_799
SURFACE_NAMES = _enum_names(pb.Surface, "SURFACE_")
EVENT_TYPE_NAMES = _enum_names(pb.EventType, "EVENT_TYPE_")
EVENT_STATUS_NAMES = _enum_names(pb.EventStatus, "EVENT_STATUS_")
SLOT_NAMES = _enum_names(pb.SlotKind, "SLOT_KIND_")
SLOT_CODES: dict[str, Any] = {name: code for code, name in SLOT_NAMES.items()}
SURFACE_CODES: dict[str, Any] = {name: code for code, name in SURFACE_NAMES.items()}
EVENT_TYPE_CODES: dict[str, Any] = {name: code for code, name in EVENT_TYPE_NAMES.items()}
EVENT_STATUS_CODES: dict[str, Any] = {name: code for code, name in EVENT_STATUS_NAMES.items()}


def filter_from_pb(f: pb.Filter) -> Filter:
    return Filter(
        include_categories=frozenset(f.include_categories),
        exclude_categories=frozenset(f.exclude_categories),
        exclude_product_ids=frozenset(f.exclude_product_ids),
        in_stock_only=f.in_stock_only,
        min_price=f.min_price if f.HasField("min_price") else None,
        max_price=f.max_price if f.HasField("max_price") else None,
        include_purchased=f.include_purchased,
        max_per_category=f.max_per_category,
        attributes=tuple(condition_from_pb(c) for c in f.attributes),
    )


def condition_from_pb(c: pb.AttributeCondition) -> AttributeCondition:
    test = c.WhichOneof("test")
    if test == "equals":
        return AttributeCondition(c.name, equals=c.equals)
    if test == "any_of":
        return AttributeCondition(c.name, any_of=tuple(c.any_of.values))
    if test == "range":
        r = c.range
        low = r.min if r.HasField("min") else None
        high = r.max if r.HasField("max") else None
        if low is None and high is None:  # a range without bounds is still a range test
            low = float("-inf")
        return AttributeCondition(c.name, min=low, max=high)
    return AttributeCondition(c.name)  # no test: Filter.check says so


def condition_to_pb(c: AttributeCondition) -> pb.AttributeCondition:
    message = pb.AttributeCondition(name=c.name)
    if c.equals is not None:
        message.equals = c.equals
    elif c.any_of is not None:
        message.any_of.values.extend(c.any_of)
    elif c.is_range:
        message.range.SetInParent()
        if c.min is not None:
            message.range.min = c.min
        if c.max is not None:
            message.range.max = c.max
    return message


def filter_to_pb(f: Filter | None) -> pb.Filter:
    f = f or Filter()
    return pb.Filter(
        include_categories=sorted(f.include_categories),
        exclude_categories=sorted(f.exclude_categories),
        exclude_product_ids=sorted(f.exclude_product_ids),
        in_stock_only=f.in_stock_only,
        min_price=f.min_price,
        max_price=f.max_price,
        include_purchased=f.include_purchased,
        max_per_category=f.max_per_category,
        attributes=[condition_to_pb(c) for c in f.attributes],
    )


def context_from_pb(c: pb.Context) -> Context:
    return Context(
        surface=SURFACE_NAMES.get(c.surface, ""),
        device=c.device,
        current_product_id=c.current_product_id,
        session_product_ids=tuple(c.session_product_ids),
    )


def context_to_pb(c: Context | None) -> pb.Context:
    c = c or Context()
    return pb.Context(
        surface=SURFACE_CODES.get(c.surface, pb.SURFACE_UNSPECIFIED),
        device=c.device,
        current_product_id=c.current_product_id,
        session_product_ids=list(c.session_product_ids),
    )


def timestamp_ms(e: pb.Event) -> int:
    """The event's time in Unix ms; 0 when not given, INVALID_TS_MS when the Timestamp breaks
    its own rules (protobuf's ToMilliseconds would raise and sink the whole batch)."""
    if not e.HasField("timestamp"):
        return 0
    ts = e.timestamp
    if not (0 <= ts.nanos < 1_000_000_000 and MIN_SECONDS <= ts.seconds <= MAX_SECONDS):
        return INVALID_TS_MS
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def event_from_pb(e: pb.Event) -> Event:
    return Event(
        event_id=e.event_id,
        customer_id=e.customer_id,
        type=EVENT_TYPE_NAMES.get(e.type, ""),
        product_id=e.product_id,
        offer_id=e.offer_id,
        ts_ms=timestamp_ms(e),
        quantity=e.quantity,
        amount=e.amount,
        recommendation_id=e.recommendation_id,
    )


def event_to_pb(e: Event, message: pb.Event) -> None:
    """Fill ``message`` (a repeated field's new element) from ``e``."""
    message.event_id = e.event_id
    message.customer_id = e.customer_id
    message.type = EVENT_TYPE_CODES.get(e.type, pb.EVENT_TYPE_UNSPECIFIED)
    message.product_id = e.product_id
    message.offer_id = e.offer_id
    message.quantity = e.quantity
    message.amount = e.amount
    message.recommendation_id = e.recommendation_id
    if e.ts_ms:
        message.timestamp.FromMilliseconds(e.ts_ms)


def result_to_pb(r: EventResult) -> pb.EventResult:
    return pb.EventResult(event_id=r.event_id, status=EVENT_STATUS_CODES[r.status], reason=r.reason)


def result_from_pb(r: pb.EventResult) -> EventResult:
    return EventResult(r.event_id, EVENT_STATUS_NAMES.get(r.status, "rejected"), r.reason)


def items_to_pb(items: list[Item]) -> list[pb.Item]:
    return [
        pb.Item(
            product_id=i.product_id,
            score=i.score,
            reason=i.reason,
            category=i.category,
            slot=SLOT_CODES.get(i.slot, pb.SLOT_KIND_UNSPECIFIED),
            promotion_id=i.promotion_id,
        )
        for i in items
    ]


def items_from_pb(items: Iterable[pb.Item]) -> list[Item]:
    return [
        Item(
            i.product_id,
            i.score,
            i.reason,
            i.category,
            SLOT_NAMES.get(i.slot, ""),
            i.promotion_id,
        )
        for i in items
    ]


def change_from_pb(u: pb.ProductUpdate) -> ProductChange:
    return ProductChange(
        u.product_id,
        u.stock if u.HasField("stock") else None,
        u.price if u.HasField("price") else None,
        u.title if u.HasField("title") else None,
        u.category if u.HasField("category") else None,
        dict(u.attributes),
    )


def change_to_pb(c: ProductChange, message: pb.ProductUpdate) -> None:
    """Fill ``message`` (a repeated field's new element) from ``c``."""
    message.product_id = c.product_id
    if c.stock is not None:
        message.stock = c.stock
    if c.price is not None:
        message.price = c.price
    if c.title is not None:
        message.title = c.title
    if c.category is not None:
        message.category = c.category
    message.attributes.update(c.attributes)

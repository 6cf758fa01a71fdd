"""Input file schemas: the columns recsvc reads and what each may contain."""

from __future__ import annotations

from dataclasses import dataclass

from formats.limits import MAX_AMOUNT, MAX_POINTS, MAX_PRICE, MAX_QUANTITY


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "id" | "timestamp" | "event" | "nonneg_float" | "float" | "bool" | "date" | "str"
    required: bool = True
    default: object = None  # value used when an optional column is absent
    maximum: float | None = None  # numbers above it are rejected (formats.limits)


INTERACTIONS: tuple[Column, ...] = (
    Column("customer_id", "id"),
    Column("product_id", "id"),
    Column("timestamp", "timestamp"),
    Column("event_type", "event", required=False, default="purchase"),
    Column("quantity", "nonneg_float", required=False, default=1.0, maximum=MAX_QUANTITY),
    Column("amount", "nonneg_float", required=False, default=None, maximum=MAX_AMOUNT),
)

CATALOG: tuple[Column, ...] = (
    Column("product_id", "id"),
    Column("title", "str", required=False, default=""),
    Column("category", "str", required=False, default="uncategorized"),
    Column("price", "nonneg_float", required=False, default=None, maximum=MAX_PRICE),
    Column("in_stock", "bool", required=False, default=True),
)

CUSTOMERS: tuple[Column, ...] = (
    Column("customer_id", "id"),
    Column("signup_date", "date", required=False),
    Column("birthday", "date", required=False),
    Column("tier", "str", required=False),
    Column("points", "nonneg_float", required=False, maximum=MAX_POINTS),
    Column("consent_personalization", "bool", required=False, default=True),
)

"""What a world is: its config, its three frames and their exact schemas."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

import polars as pl

INTERACTIONS_SCHEMA: Final = pl.Schema(
    {
        "customer_id": pl.String(),
        "product_id": pl.String(),
        "timestamp": pl.Datetime("us", "UTC"),
        "event_type": pl.String(),
        "quantity": pl.Int32(),
        "amount": pl.Float64(),
    }
)
CATALOG_SCHEMA: Final = pl.Schema(
    {
        "product_id": pl.String(),
        "title": pl.String(),
        "category": pl.String(),
        "price": pl.Float64(),
        "in_stock": pl.Boolean(),
        "brand": pl.String(),
        "consumable": pl.Boolean(),
    }
)
CUSTOMERS_SCHEMA: Final = pl.Schema(
    {
        "customer_id": pl.String(),
        "signup_date": pl.Date(),
        "birthday": pl.Date(),
        "tier": pl.String(),
        "points": pl.Int64(),
        "consent_personalization": pl.Boolean(),
    }
)
TIERS: Final = ("bronze", "silver", "gold", "platinum")


@dataclass(frozen=True)
class SynthConfig:
    customers: int = 10_000
    products: int = 1_000
    seed: int = 0
    events_per_customer: float = 20.0  # mean interactions per customer (all event types)
    categories: int = 0  # 0 = choose from products: clamp(products // 50, 5, 200)
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    days: int = 365


@dataclass(frozen=True)
class World:
    interactions: pl.DataFrame
    catalog: pl.DataFrame
    customers: pl.DataFrame


def validate(config: SynthConfig) -> None:
    if config.customers < 1 or config.products < 1:
        raise ValueError("customers and products must be at least 1")
    if config.events_per_customer < 0 or not math.isfinite(config.events_per_customer):
        raise ValueError("events_per_customer must be a finite number >= 0")
    if config.categories < 0:
        raise ValueError("categories must be >= 0 (0 = automatic)")
    if config.days < 1:
        raise ValueError("days must be at least 1")


def start_epoch_us(config: SynthConfig) -> int:
    start = config.start if config.start.tzinfo else config.start.replace(tzinfo=UTC)
    return (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def start_date(config: SynthConfig) -> date:
    start = config.start if config.start.tzinfo else config.start.replace(tzinfo=UTC)
    return start.astimezone(UTC).date()

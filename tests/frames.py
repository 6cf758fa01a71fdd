"""Small hand-made input frames shared by tests (validated-interactions shape)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import polars as pl

# customer, product, time, event type, amount
InteractionRow = tuple[str, str, datetime, str, float | None]
INTERACTIONS_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Utf8(),
    "product_id": pl.Utf8(),
    "timestamp": pl.Datetime("us", "UTC"),
    "event_type": pl.Utf8(),
    "quantity": pl.Float64(),
    "amount": pl.Float64(),
}


def interactions_frame(rows: Sequence[InteractionRow]) -> pl.DataFrame:
    """Interactions as read_interactions returns them (quantity 1)."""
    return pl.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "product_id": [r[1] for r in rows],
            "timestamp": [r[2] for r in rows],
            "event_type": [r[3] for r in rows],
            "quantity": [1.0] * len(rows),
            "amount": [r[4] for r in rows],
        },
        schema=INTERACTIONS_SCHEMA,
    )

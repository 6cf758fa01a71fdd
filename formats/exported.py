"""The exported-events layout: what `recsvc events export` writes and `recsvc train` and
`recsvc report` read.

``OUT/day=YYYY-MM-DD/part-<first>-<last>.parquet`` holds the events of one export chunk
(stream ids of its first and last entry, ``-`` written as ``_``) that happened on that day, in
stream order, with the columns of ``COLUMNS``; ``OUT/_checkpoint.json`` names the last stream
id whose events are in files. Files whose chunk starts after the checkpoint were never
committed and are not part of the export (the exporter deletes them on its next run).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from formats.events import INTEREST

PARTS = "day=*/part-*.parquet"
CHECKPOINT = "_checkpoint.json"
COLUMNS: dict[str, pl.DataType] = {
    "event_id": pl.Utf8(),
    "customer_id": pl.Utf8(),
    "event_type": pl.Utf8(),
    "product_id": pl.Utf8(),
    "offer_id": pl.Utf8(),
    "timestamp": pl.Datetime("ms", "UTC"),
    "quantity": pl.Float64(),
    "amount": pl.Float64(),
    "recommendation_id": pl.Utf8(),
    "stream_id": pl.Utf8(),
    "promotion_id": pl.Utf8(),  # promotion_served records (files written before: absent)
}


def read_exported(out: Path) -> pl.DataFrame:
    """Exported events as training interactions (product interest events only)."""
    files = sorted(out.glob(PARTS))
    frame = (
        pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
        if files
        else pl.DataFrame(schema=COLUMNS)
    )
    # rec_click counts as a click; impressions and offer events are not interest in a product
    return (
        frame.filter(
            pl.col("event_type").is_in(list(INTEREST)) & pl.col("product_id").is_not_null()
        )
        .with_columns(pl.col("event_type").replace_strict(INTEREST))
        .select("customer_id", "product_id", "timestamp", "event_type", "quantity", "amount")
    )

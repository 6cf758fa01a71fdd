"""`recsvc report`: campaign measurement over exported events.

Three tables over a time range: per offer (offer_impression -> offer_click -> offer_redeemed),
per recommendation source (rec_impression -> rec_click -> purchase) and per promotion. A
purchase counts for a source when it carries a recommendation_id from that source's responses
(the id's prefix names the RPC: see formats.types.SOURCES); revenue is the sum of those
purchases' amounts. For offers, revenue is the amount on offer_redeemed events (the order the
offer was used on). For promotions, the server's ``promotion_served`` records say which
products of which answer a promotion placed; an impression, click or purchase with that
recommendation_id and product counts for the promotion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from formats.errors import RecsvcError
from formats.events import SERVED
from formats.exported import COLUMNS
from formats.types import SOURCES


class ReportError(RecsvcError, ValueError):
    """The events cannot be reported on; the message says why."""


@dataclass(frozen=True)
class CampaignReport:
    offers: pl.DataFrame
    sources: pl.DataFrame
    events: int  # events in the range
    promotions: pl.DataFrame = field(default_factory=pl.DataFrame)


def read_events(directory: Path) -> pl.DataFrame:
    """Every exported event (all types) under ``directory`` (`recsvc events export --out`)."""
    if not directory.is_dir():
        raise ReportError(f"{directory}: no such directory (run `recsvc events export` first)")
    files = sorted(directory.glob("day=*/part-*.parquet"))
    if not files:
        return pl.DataFrame(schema=COLUMNS)
    frame = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in COLUMNS.items() if c not in frame.columns]
    return frame.with_columns(missing) if missing else frame


def _rates(frame: pl.DataFrame, shown: str, clicked: str, converted: str) -> pl.DataFrame:
    def ratio(a: str, b: str) -> pl.Expr:
        return pl.when(pl.col(b) > 0).then(pl.col(a) / pl.col(b)).otherwise(None)

    return frame.with_columns(
        ratio(clicked, shown).alias("ctr"),
        ratio(converted, clicked).alias("conversion"),
        ratio(converted, shown).alias(f"{converted}_rate"),
    )


def campaign_report(
    events: pl.DataFrame, start: datetime | None = None, end: datetime | None = None
) -> CampaignReport:
    """Per-offer and per-source funnels over [start, end)."""
    if start is not None:
        events = events.filter(pl.col("timestamp") >= start)
    if end is not None:
        events = events.filter(pl.col("timestamp") < end)

    def count(kind: str) -> pl.Expr:
        return (pl.col("event_type") == kind).sum()

    offer_events = events.filter(pl.col("offer_id").is_not_null())
    offers = (
        offer_events.group_by("offer_id")
        .agg(
            count("offer_impression").alias("impressions"),
            count("offer_click").alias("clicks"),
            count("offer_redeemed").alias("redemptions"),
            pl.col("amount")
            .filter(pl.col("event_type") == "offer_redeemed")
            .sum()
            .alias("revenue"),
        )
        .sort("offer_id")
    )
    offers = _rates(offers, "impressions", "clicks", "redemptions")

    attributed = events.filter(pl.col("recommendation_id").is_not_null()).with_columns(
        pl.col("recommendation_id")
        .str.split("-")
        .list.first()
        .replace_strict(SOURCES, default="unknown")
        .alias("source")
    )
    sources = (
        attributed.group_by("source")
        .agg(
            (count("rec_impression") + count("offer_impression")).alias("impressions"),
            (count("rec_click") + count("offer_click")).alias("clicks"),
            count("purchase").alias("purchases"),
            pl.col("amount").filter(pl.col("event_type") == "purchase").sum().alias("revenue"),
        )
        .sort("source")
    )
    sources = _rates(sources, "impressions", "clicks", "purchases")
    promotions = promotion_funnel(events)
    return CampaignReport(offers, sources, events.height, promotions)


def promotion_funnel(events: pl.DataFrame) -> pl.DataFrame:
    """Per promotion: items served, and the impressions, clicks, purchases and revenue of
    those items (joined on recommendation_id and product_id)."""
    served = (
        events.filter(pl.col("event_type") == SERVED)
        .select("recommendation_id", "product_id", "promotion_id")
        .unique(subset=["recommendation_id", "product_id"], keep="first")
    )
    followed = events.filter(
        pl.col("event_type").is_in(["rec_impression", "rec_click", "purchase"])
    ).join(served, on=["recommendation_id", "product_id"], how="inner", suffix="_served")

    def count(kind: str) -> pl.Expr:
        return (pl.col("event_type") == kind).sum()

    outcomes = followed.group_by("promotion_id_served").agg(
        count("rec_impression").alias("impressions"),
        count("rec_click").alias("clicks"),
        count("purchase").alias("purchases"),
        pl.col("amount").filter(pl.col("event_type") == "purchase").sum().alias("revenue"),
    )
    table = (
        served.group_by("promotion_id")
        .agg(pl.len().alias("served"))
        .join(
            outcomes.rename({"promotion_id_served": "promotion_id"}), on="promotion_id", how="left"
        )
        .with_columns(pl.col("impressions", "clicks", "purchases").fill_null(0))
        .with_columns(pl.col("revenue").fill_null(0.0))
        .sort("promotion_id")
    )
    return _rates(table, "impressions", "clicks", "purchases")


def format_table(frame: pl.DataFrame, title: str) -> str:
    if frame.is_empty():
        return f"{title}\n  (no events)"
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        float_precision=4,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_formatting="ASCII_MARKDOWN",
        tbl_width_chars=200,
        fmt_str_lengths=64,
    ):
        return f"{title}\n{frame}"


def plot_funnel(report: CampaignReport, path: Path) -> None:
    """One horizontal funnel bar group per offer and per source, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    rows = [
        (f"offer {r['offer_id']}", r["impressions"], r["clicks"], r["redemptions"])
        for r in report.offers.iter_rows(named=True)
    ] + [
        (f"source {r['source']}", r["impressions"], r["clicks"], r["purchases"])
        for r in report.sources.iter_rows(named=True)
    ]
    fig, ax = plt.subplots(figsize=(9, 0.6 * max(len(rows), 1) + 1.5))
    labels = [r[0] for r in rows]
    y = list(range(len(rows)))
    for step, (name, color) in enumerate(
        (("impressions", "#9ecae1"), ("clicks", "#4292c6"), ("conversions", "#08519c"))
    ):
        ax.barh(y, [r[1 + step] for r in rows], color=color, label=name)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("events")
    ax.set_title(f"Campaign funnel ({report.events:,} events)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""`recsvc report`: funnels per offer and per recommendation source from exported events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from formats.exported import COLUMNS
from recsvc.cli import main
from training.report import campaign_report, read_events

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _events(
    rows: list[tuple[str, str | None, str | None, str | None, float | None]],
) -> pl.DataFrame:
    """(type, product, offer, recommendation_id, amount) rows, one minute apart from T0."""
    data = [
        {
            "event_id": f"e{i}",
            "customer_id": "C1",
            "event_type": kind,
            "product_id": product,
            "offer_id": offer,
            "timestamp": int(T0.timestamp() * 1000) + i * 60_000,
            "quantity": 1.0,
            "amount": amount,
            "recommendation_id": rec,
            "stream_id": f"{i}-0",
        }
        for i, (kind, product, offer, rec, amount) in enumerate(rows)
    ]
    frame = pl.DataFrame(data, schema={**COLUMNS, "timestamp": pl.Int64})
    return frame.with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))


ROWS: list[tuple[str, str | None, str | None, str | None, float | None]] = [
    ("rec_impression", "P1", None, "rp-a", None),
    ("rec_impression", "P2", None, "rp-a", None),
    ("rec_click", "P1", None, "rp-a", None),
    ("purchase", "P1", None, "rp-a", 30.0),
    ("rec_impression", "P3", None, "sp-b", None),
    ("purchase", "P9", None, None, 99.0),  # not attributed
    ("offer_impression", None, "O1", "of-c", None),
    ("offer_impression", None, "O1", "of-d", None),
    ("offer_click", None, "O1", "of-c", None),
    ("offer_redeemed", None, "O1", "of-c", 12.5),
    ("offer_impression", None, "O2", "of-e", None),
]


def test_funnels_per_offer_and_per_source() -> None:
    report = campaign_report(_events(ROWS))
    offers = {r["offer_id"]: r for r in report.offers.to_dicts()}
    assert offers["O1"]["impressions"] == 2 and offers["O1"]["clicks"] == 1
    assert offers["O1"]["redemptions"] == 1 and offers["O1"]["revenue"] == 12.5
    assert offers["O1"]["ctr"] == 0.5 and offers["O1"]["redemptions_rate"] == 0.5
    assert offers["O2"]["ctr"] == 0.0 and offers["O2"]["conversion"] is None
    sources = {r["source"]: r for r in report.sources.to_dicts()}
    products = sources["RecommendProducts"]
    assert (products["impressions"], products["clicks"], products["purchases"]) == (2, 1, 1)
    assert products["revenue"] == 30.0 and products["conversion"] == 1.0
    assert sources["SimilarProducts"]["impressions"] == 1
    assert sources["RecommendOffers"]["impressions"] == 3
    assert report.events == len(ROWS)


def test_time_range_is_half_open() -> None:
    start = T0.replace(minute=6)  # from the first offer impression (row 6) on
    report = campaign_report(_events(ROWS), start=start)
    assert report.events == len(ROWS) - 6
    assert report.sources.filter(pl.col("source") == "RecommendProducts").is_empty()


def _export_dir(tmp_path: Path) -> Path:
    day = tmp_path / "events" / "day=2026-11-01"
    day.mkdir(parents=True)
    _events(ROWS).write_parquet(day / "part-1_0-11_0.parquet")
    return tmp_path / "events"


def test_cli_formats_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = _export_dir(tmp_path)
    assert read_events(events).height == len(ROWS)
    assert main(["report", "--events", str(events), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {o["offer_id"] for o in data["offers"]} == {"O1", "O2"}
    assert main(["report", "--events", str(events), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# offers\noffer_id,impressions,clicks,redemptions,revenue,")
    plot = tmp_path / "funnel.png"
    assert main(["report", "--events", str(events), "--plot", str(plot)]) == 0
    assert "per recommendation source" in capsys.readouterr().out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_missing_directory_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--events", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recsvc report: error:") and "events export" in err


def test_promotions_count_the_impressions_clicks_and_purchases_of_their_items(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows: list[tuple[str, str | None, str | None, str | None, float | None]] = [
        ("promotion_served", "P1", None, "rp-a", None),
        ("promotion_served", "P2", None, "rp-a", None),
        ("promotion_served", "P1", None, "rp-b", None),
        ("rec_impression", "P1", None, "rp-a", None),
        ("rec_impression", "P2", None, "rp-a", None),
        ("rec_impression", "P3", None, "rp-a", None),  # in the answer, not promoted
        ("rec_click", "P1", None, "rp-a", None),
        ("purchase", "P1", None, "rp-a", 30.0),
        ("rec_impression", "P1", None, "rp-b", None),
        ("rec_impression", "P1", None, "rp-c", None),  # another answer: not promoted there
    ]
    promotion = {0: "summer", 1: "brand-x", 2: "summer"}
    frame = _events(rows).with_columns(
        pl.Series("promotion_id", [promotion.get(i) for i in range(len(rows))], dtype=pl.Utf8)
    )
    report = campaign_report(frame)
    table = {r["promotion_id"]: r for r in report.promotions.to_dicts()}
    summer, brand = table["summer"], table["brand-x"]
    assert (summer["served"], summer["impressions"], summer["clicks"]) == (2, 2, 1)
    assert (summer["purchases"], summer["revenue"], summer["ctr"]) == (1, 30.0, 0.5)
    assert (brand["served"], brand["impressions"], brand["clicks"], brand["purchases"]) == (
        1,
        1,
        0,
        0,
    )
    # The sources table is unchanged by the server's records.
    products = {r["source"]: r for r in report.sources.to_dicts()}["RecommendProducts"]
    assert (products["impressions"], products["clicks"], products["purchases"]) == (5, 1, 1)
    # Files exported before promotion_id existed are read too (the column is then empty).
    day = tmp_path / "events" / "day=2026-11-01"
    day.mkdir(parents=True)
    _events(ROWS).drop("promotion_id").write_parquet(day / "part-1_0-11_0.parquet")
    frame.write_parquet(day / "part-12_0-21_0.parquet")
    assert main(["report", "--events", str(tmp_path / "events")]) == 0
    out = capsys.readouterr().out
    assert "per promotion" in out and "summer" in out

"""Malformed training files: every bad row named with its file, line (CSV) or row (Parquet)
and reason; with --on-error skip the bad rows are dropped and counted and the bundle is sound.
Never a traceback, never a bundle that switches real-time personalization off.

Issue 11, defects 6 and 7 (future timestamps; a quantity of 1e308), and the training and
analytics errors no test used to trigger.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from formats import bundle as b
from recsvc.cli import main
from training.analytics import AnalyticsError
from training.analytics.btyd import fit_candidate
from training.analytics.config import Candidate
from training.analytics.summaries import buyer_summary

WriteCsv = Callable[[str, Sequence[str]], Path]
HEADER = "customer_id,product_id,timestamp,event_type,quantity"
TRAIN_FAST = ["--quiet", "--factors", "4", "--iterations", "2"]
DAY = 86_400
START = 1_704_067_200  # 2024-01-01


def good_rows(customers: int = 30, per_customer: int = 8, products: int = 12) -> list[str]:
    return [
        f"c{c},p{(c * 5 + j * 7) % products},{START + j * DAY + c * 60},purchase,1"
        for c in range(customers)
        for j in range(per_customer)
    ]


def train(
    capsys: pytest.CaptureFixture[str], interactions: Path, model_dir: Path, *more: str
) -> tuple[int, str, str]:
    paths = ["--interactions", str(interactions), "--model-dir", str(model_dir)]
    code = main(["train", *paths, *TRAIN_FAST, *more])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


FUTURE = "2999-01-01T00:00:00"


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        (f"c1,p1,{FUTURE},purchase,1", "timestamp in the future '2999-01-01T00:00:00'"),
        ("c1,p1,32503680000,purchase,1", "timestamp in the future"),  # 3000-01-01, epoch s
        ("c1,p1,1969-12-31,purchase,1", "timestamp before 1970 '1969-12-31'"),
        ("c1,p1,-1,purchase,1", "timestamp before 1970 '-1'"),
        ("c1,p1,0001-01-01,purchase,1", "timestamp before 1970"),
        ("c1,p1,yesterday,purchase,1", "unparseable timestamp 'yesterday'"),
        ("c1,p1,2024-01-02,purchase,1e308", "quantity above the maximum 1e+06 '1e308'"),
        ("c1,p1,2024-01-02,purchase,9223372036854775807", "quantity above the maximum"),
        ("c1,p1,2024-01-02,purchase,inf", "non-finite quantity"),
        ("c1,p1,2024-01-02,purchase,NaN", "non-finite quantity"),
        ("c1,p1,2024-01-02,purchase,-2", "negative quantity '-2'"),
        ("c1,p1,2024-01-02,purchase,two", "unparseable quantity 'two'"),
        ("c1,p1,2024-01-02,bought,1", "unknown event_type 'bought'"),
        (f"{'c' * 129},p1,2024-01-02,purchase,1", "customer_id longer than 128 characters"),
        (f"c1,{'p' * 129},2024-01-02,purchase,1", "product_id longer than 128 characters"),
    ],
)
def test_a_bad_row_fails_training_naming_its_line(
    write_csv: WriteCsv,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bad_row: str,
    reason: str,
) -> None:
    rows = good_rows()
    rows.insert(17, bad_row)  # CSV line 19: the header is line 1
    path = write_csv("interactions.csv", [HEADER, *rows])
    code, _, err = train(capsys, path, tmp_path / "models")
    assert code == 2
    assert f"interactions.csv, line 19: {reason}" in err
    assert "--on-error=skip" in err
    assert b.current_version(tmp_path / "models") is None


def test_future_rows_skipped_leave_a_bundle_whose_last_event_is_not_in_the_future(
    write_csv: WriteCsv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = good_rows()
    future = [f"c{c},p{c},{FUTURE},purchase,1" for c in range(5)]
    huge = ["c3,p3,2024-01-05,purchase,1e308"]
    path = write_csv("interactions.csv", [HEADER, *rows, *future, *huge])
    code, out, _ = train(capsys, path, tmp_path / "models", "--on-error", "skip")
    assert code == 0
    assert "dropped 6 (" in out and "5 timestamp in the future" in out
    version = b.current_version(tmp_path / "models")
    assert version is not None
    manifest = json.loads((tmp_path / "models" / version / b.MANIFEST).read_text())
    last = manifest["data"]["last_event_ms"]
    newest = max(START + j * DAY + c * 60 for c in range(30) for j in range(8))
    assert last == newest * 1000 + 999  # the newest real row, not year 2999
    assert last < time.time() * 1000


def test_parquet_with_future_times_and_huge_numbers_names_the_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = 240
    ts = [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=i) for i in range(n)]
    ts[10] = datetime(2999, 1, 1, tzinfo=UTC)
    quantity = [1.0] * n
    quantity[20] = 1e308
    pl.DataFrame(
        {
            "customer_id": [f"c{i % 30}" for i in range(n)],
            "product_id": [f"p{i % 12}" for i in range(n)],
            "timestamp": ts,
            "event_type": ["purchase"] * n,
            "quantity": quantity,
        }
    ).write_parquet(tmp_path / "interactions.parquet")
    code, _, err = train(capsys, tmp_path / "interactions.parquet", tmp_path / "models")
    assert code == 2
    assert "interactions.parquet, row 11: timestamp in the future" in err
    assert "interactions.parquet, row 21: quantity above the maximum" in err


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "empty.csv: cannot read"),
        ([HEADER], "empty.csv: no usable interactions"),
        (["customer_id,product_id", "c1,p1"], "missing required column(s) timestamp;"),
        (["a,b,c", "1,2,3"], "column(s) customer_id, product_id, timestamp; found a, b, c"),
    ],
    ids=["zero-bytes", "header-only", "missing-column", "wrong-columns"],
)
def test_files_without_usable_rows_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str], message: str
) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    code, _, err = train(capsys, path, tmp_path / "models")
    assert code == 2 and err.startswith("recsvc train: error:")
    assert message in err


def test_every_row_skipped_is_no_usable_interactions(
    write_csv: WriteCsv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv("i.csv", [HEADER, *(f"c{c},p1,{FUTURE},purchase,1" for c in range(20))])
    code, _, err = train(capsys, path, tmp_path / "models", "--on-error", "skip")
    assert code == 2 and "i.csv: no usable interactions" in err


def test_products_missing_from_the_catalog_leave_no_usable_interactions(
    write_csv: WriteCsv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv("i.csv", [HEADER, *good_rows()])
    catalog = write_csv("catalog.csv", ["product_id,category,price", "other,x,1.0"])
    code, _, err = train(capsys, path, tmp_path / "models", "--catalog", str(catalog))
    assert code == 2 and "i.csv: no usable interactions" in err


def test_one_interaction_per_customer_leaves_no_held_out_customer(
    write_csv: WriteCsv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [f"c{c},p{c % 7},{START + c * 60},purchase,1" for c in range(50)]
    code, _, err = train(capsys, write_csv("i.csv", [HEADER, *rows]), tmp_path / "models")
    assert code == 2
    assert "the held-out split has no customer with a product to predict" in err


def test_buyers_of_a_single_day_cannot_fit_a_repeat_buying_model() -> None:
    day = date(2026, 1, 10)
    days = pl.DataFrame(
        {"customer_id": ["a", "b", "c"], "day": [day] * 3, "spend": [5.0, 6.0, 7.0]}
    )
    summary = buyer_summary(days, day)
    assert summary["T"].to_list() == [0, 0, 0]
    for model in ("bgnbd", "mbgnbd", "paretonbd"):
        with pytest.raises(AnalyticsError, match="no buyer has more than one day of history"):
            fit_candidate(Candidate(model), summary)
    with pytest.raises(AnalyticsError, match="no buyer has more than one day"):
        fit_candidate(Candidate("bgnbd"), summary.clear())

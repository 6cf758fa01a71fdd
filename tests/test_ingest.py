"""Reading and validating input files: every bad record reported with file, line/row, reason."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from training.ingest import (
    InputError,
    RowError,
    ValidationFailed,
    read_catalog,
    read_customers,
    read_interactions,
)

WriteCsv = Callable[[str, Sequence[str]], Path]  # the write_csv fixture (conftest.py)

INTERACTIONS_HEADER = "customer_id,product_id,timestamp,event_type,quantity"
GOOD = "c1,p1,2024-01-02T10:00:00Z,purchase,1"


# ---------------------------------------------------------------------------------------------
# Each reason, with file and CSV line number (header = line 1)


@pytest.mark.parametrize(
    ("bad_row", "kind", "shown"),
    [
        ("c2,p1,yesterday,purchase,1", "unparseable timestamp", "'yesterday'"),
        ("c2,p1,2024-02-30,purchase,1", "unparseable timestamp", "'2024-02-30'"),
        (",p1,2024-01-02,purchase,1", "empty customer_id", ""),
        ("   ,p1,2024-01-02,purchase,1", "empty customer_id", ""),
        ("c2,,2024-01-02,purchase,1", "empty product_id", ""),
        ("c2,p1,2024-01-02,purchase,-2", "negative quantity", "'-2'"),
        ("c2,p1,2024-01-02,purchase,two", "unparseable quantity", "'two'"),
        ("c2,p1,2024-01-02,buy,1", "unknown event_type", "'buy'"),
    ],
)
def test_each_reason_is_reported_with_file_and_line(
    write_csv: WriteCsv, bad_row: str, kind: str, shown: str
) -> None:
    path = write_csv("interactions.csv", [INTERACTIONS_HEADER, GOOD, bad_row, GOOD])

    frame, report = read_interactions(path, on_error="skip")

    assert len(report.examples) == 1
    error = report.examples[0]
    assert error.file == str(path)
    assert error.where == "line 3"
    assert error.reason.startswith(kind)
    assert shown in error.reason
    assert str(error) == f"{path}, line 3: {error.reason}"
    assert report.dropped == {kind: 1}
    assert (report.rows_read, report.rows_kept, report.rows_dropped) == (3, 2, 1)
    assert frame.height == 2


def test_unknown_event_type_lists_the_accepted_ones(write_csv: WriteCsv) -> None:
    path = write_csv("i.csv", [INTERACTIONS_HEADER, "c1,p1,2024-01-02,wishlist,1"])
    _, report = read_interactions(path, on_error="skip")
    reason = report.examples[0].reason
    for event in ("purchase", "add_to_cart", "click", "view"):
        assert event in reason


def test_fail_raises_naming_file_line_and_reason(write_csv: WriteCsv) -> None:
    path = write_csv(
        "interactions.csv",
        [INTERACTIONS_HEADER, GOOD, GOOD, GOOD, "c9,p1,not-a-date,purchase,1", GOOD],
    )

    with pytest.raises(ValidationFailed) as info:
        read_interactions(path)  # on_error defaults to "fail"

    message = str(info.value)
    assert str(path) in message
    assert f"{path}, line 5: unparseable timestamp 'not-a-date'" in message
    assert "--on-error=skip" in message
    assert info.value.report.examples == [
        RowError(str(path), "line 5", "unparseable timestamp 'not-a-date'")
    ]
    assert info.value.report.rows_dropped == 1


def test_fail_message_lists_every_bad_line_and_counts_the_rest(write_csv: WriteCsv) -> None:
    bad = [f"c{i},p1,2024-01-02,purchase,-{i + 1}" for i in range(25)]  # lines 2..26
    path = write_csv("many.csv", [INTERACTIONS_HEADER, *bad])

    with pytest.raises(ValidationFailed) as info:
        read_interactions(path, on_error="fail")

    message = str(info.value)
    assert message.startswith(f"25 bad rows in {path}")
    assert f"{path}, line 2: negative quantity '-1'" in message
    assert f"{path}, line 21: negative quantity '-20'" in message  # the 20th example
    assert "line 22" not in message
    assert "... and 5 more bad rows" in message


def test_skip_drops_exactly_the_bad_rows_and_counts_them(write_csv: WriteCsv) -> None:
    lines = [
        INTERACTIONS_HEADER,
        "ok1,p1,2024-01-02,purchase,1",  # 2
        "bad1,p1,someday,purchase,1",  # 3 unparseable timestamp
        "ok2,p2,2024-01-03,view,2",  # 4
        ",p3,2024-01-03,view,2",  # 5 empty customer_id
        "bad3,,2024-01-03,view,2",  # 6 empty product_id
        "bad4,p1,2024-01-03,click,-1",  # 7 negative quantity
        "ok3,p3,2024-01-04,click,3",  # 8
        "bad5,p1,2024-01-03,click,x",  # 9 unparseable quantity
        "bad6,p1,2024-01-03,return,1",  # 10 unknown event_type
        "bad7,p1,2024-01-03,return,1",  # 11 unknown event_type
        "ok4,p4,2024-01-05,add_to_cart,1",  # 12
    ]
    path = write_csv("mixed.csv", lines)

    frame, report = read_interactions(path, on_error="skip")

    assert frame["customer_id"].to_list() == ["ok1", "ok2", "ok3", "ok4"]
    assert report.file == str(path)
    assert report.rows_read == 11
    assert report.rows_kept == 4
    assert report.rows_dropped == 7
    assert report.dropped == {
        "unparseable timestamp": 1,
        "empty customer_id": 1,
        "empty product_id": 1,
        "negative quantity": 1,
        "unparseable quantity": 1,
        "unknown event_type": 2,
    }
    assert [e.where for e in report.examples] == [
        "line 3",
        "line 5",
        "line 6",
        "line 7",
        "line 9",
        "line 10",
        "line 11",
    ]
    summary = report.summary()
    assert summary.startswith(f"{path}: read 11 rows, kept 4, dropped 7 (")
    assert "2 unknown event_type" in summary


def test_clean_file_reports_nothing_dropped(write_csv: WriteCsv) -> None:
    path = write_csv("clean.csv", [INTERACTIONS_HEADER, GOOD, GOOD])
    frame, report = read_interactions(path)
    assert frame.height == 2
    assert (report.rows_read, report.rows_kept, report.dropped, report.examples) == (2, 2, {}, [])
    assert report.summary() == f"{path}: read 2 rows, kept 2"


def test_line_numbers_count_physical_lines_after_multiline_field(write_csv: WriteCsv) -> None:
    path = write_csv(
        "catalog.csv",
        [
            "product_id,title,in_stock",
            'p1,"Warm hat,',  # line 2: a title spanning two lines
            'two lines",yes',  # line 3
            "p2,Scarf,maybe",  # line 4: the bad row
        ],
    )
    _, report = read_catalog(path, on_error="skip")
    assert [e.where for e in report.examples] == ["line 4"]


# ---------------------------------------------------------------------------------------------
# Accepted values and defaults


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-05T10:20:30Z", datetime(2024, 3, 5, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-05T10:20:30.250Z", datetime(2024, 3, 5, 10, 20, 30, 250000, tzinfo=UTC)),
        ("2024-03-05T12:20:30+02:00", datetime(2024, 3, 5, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-05T05:20:30-05:00", datetime(2024, 3, 5, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-05T00:30:00+02:00", datetime(2024, 3, 4, 22, 30, 0, tzinfo=UTC)),
        ("2024-03-05 10:20:30", datetime(2024, 3, 5, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-05T10:20:30", datetime(2024, 3, 5, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-05", datetime(2024, 3, 5, tzinfo=UTC)),
        ("1709634030", datetime(2024, 3, 5, 10, 20, 30, tzinfo=UTC)),
        (" 2024-03-05 ", datetime(2024, 3, 5, tzinfo=UTC)),
    ],
)
def test_accepted_timestamp_forms_become_utc(
    write_csv: WriteCsv, text: str, expected: datetime
) -> None:
    path = write_csv("ts.csv", ["customer_id,product_id,timestamp", f"c1,p1,{text}"])
    frame, report = read_interactions(path)
    assert report.rows_kept == 1
    assert frame.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert frame["timestamp"][0] == expected


def test_optional_columns_are_defaulted_when_absent(write_csv: WriteCsv) -> None:
    path = write_csv(
        "minimal.csv", ["customer_id,product_id,timestamp", "c1,p1,2024-01-01", "c2,p2,2024-01-02"]
    )
    frame, _ = read_interactions(path)
    assert frame.columns[:5] == ["customer_id", "product_id", "timestamp", "event_type", "quantity"]
    assert frame["event_type"].to_list() == ["purchase", "purchase"]
    assert frame["quantity"].to_list() == [1.0, 1.0]
    assert frame["amount"].to_list() == [None, None]


def test_empty_optional_values_are_defaulted(write_csv: WriteCsv) -> None:
    path = write_csv(
        "blanks.csv",
        [INTERACTIONS_HEADER + ",amount", "c1,p1,2024-01-01,,,", "c2,p2,2024-01-02,VIEW,2.5,9.99"],
    )
    frame, report = read_interactions(path)
    assert report.rows_kept == 2
    assert frame["event_type"].to_list() == ["purchase", "view"]
    assert frame["quantity"].to_list() == [1.0, 2.5]
    assert frame["amount"].to_list() == [None, 9.99]


def test_ids_are_trimmed(write_csv: WriteCsv) -> None:
    path = write_csv("ids.csv", ["customer_id,product_id,timestamp", " c1 , p1 ,2024-01-01"])
    frame, _ = read_interactions(path)
    assert frame.row(0)[:2] == ("c1", "p1")


# ---------------------------------------------------------------------------------------------
# Parquet input with typed columns


def test_parquet_typed_columns(tmp_path: Path) -> None:
    berlin = pl.Series(
        "timestamp",
        [datetime(2024, 6, 1, 12, 0), datetime(2024, 6, 2, 8, 30), datetime(2024, 6, 3)],
    ).dt.replace_time_zone("Europe/Berlin")  # wall-clock times, UTC+2 in June
    frame = pl.DataFrame(
        {
            "customer_id": pl.Series([101, 102, 103], dtype=pl.Int64),
            "product_id": ["p1", "p2", "p3"],
            "timestamp": berlin,
            "event_type": ["purchase", "view", "click"],
            "quantity": pl.Series([1, 3, 0], dtype=pl.Int32),
        }
    )
    path = tmp_path / "interactions.parquet"
    frame.write_parquet(path)

    out, report = read_interactions(path)

    assert report.rows_kept == 3
    assert out["customer_id"].to_list() == ["101", "102", "103"]
    assert out["timestamp"].to_list() == [
        datetime(2024, 6, 1, 10, 0, tzinfo=UTC),
        datetime(2024, 6, 2, 6, 30, tzinfo=UTC),
        datetime(2024, 6, 2, 22, 0, tzinfo=UTC),
    ]
    assert out["quantity"].dtype == pl.Float64
    assert out["quantity"].to_list() == [1.0, 3.0, 0.0]


def test_parquet_naive_datetimes_date_and_epoch_are_utc(tmp_path: Path) -> None:
    expected = [datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC)]
    for name, column in (
        ("naive", pl.Series([datetime(2024, 1, 2), datetime(2024, 1, 3)], dtype=pl.Datetime("ns"))),
        ("date", pl.Series([date(2024, 1, 2), date(2024, 1, 3)])),
        ("epoch", pl.Series([1704153600, 1704240000], dtype=pl.Int64)),
    ):
        path = tmp_path / f"{name}.parquet"
        pl.DataFrame(
            {"customer_id": ["a", "b"], "product_id": ["p", "q"], "timestamp": column}
        ).write_parquet(path)
        out, _ = read_interactions(path)
        assert out["timestamp"].to_list() == expected, name


def test_parquet_bad_rows_are_reported_by_1_based_row(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "customer_id": ["a", "b", None, "d"],
            "product_id": ["p", "q", "r", "s"],
            "timestamp": [datetime(2024, 1, 1), datetime(2024, 1, 2), datetime(2024, 1, 3), None],
            "quantity": pl.Series([1, -2, 1, 1], dtype=pl.Int64),
        }
    )
    path = tmp_path / "bad.parquet"
    frame.write_parquet(path)

    out, report = read_interactions(path, on_error="skip")

    assert out["customer_id"].to_list() == ["a"]
    assert [(e.file, e.where) for e in report.examples] == [
        (str(path), "row 2"),
        (str(path), "row 3"),
        (str(path), "row 4"),
    ]
    assert report.examples[0].reason == "negative quantity '-2'"
    assert report.examples[1].reason == "empty customer_id"
    assert report.examples[2].reason.startswith("unparseable timestamp")
    with pytest.raises(ValidationFailed, match=r"bad\.parquet, row 2: negative quantity"):
        read_interactions(path)


# ---------------------------------------------------------------------------------------------
# Files that cannot be read at all


@pytest.mark.parametrize("column", ["customer_id", "product_id", "timestamp"])
def test_missing_required_column_names_it(write_csv: WriteCsv, column: str) -> None:
    header = [c for c in ("customer_id", "product_id", "timestamp", "quantity") if c != column]
    path = write_csv("i.csv", [",".join(header), ",".join("x" * len(header))])
    with pytest.raises(InputError, match=rf"missing required column\(s\) {column}\b") as info:
        read_interactions(path)
    assert str(path) in str(info.value)


def test_missing_required_column_in_catalog_and_customers(write_csv: WriteCsv) -> None:
    catalog = write_csv("catalog.csv", ["sku,title", "p1,Hat"])
    with pytest.raises(InputError, match="product_id"):
        read_catalog(catalog)
    customers = write_csv("customers.csv", ["id,tier", "c1,gold"])
    with pytest.raises(InputError, match="customer_id"):
        read_customers(customers)


@pytest.mark.parametrize("name", ["interactions.json", "interactions.xlsx", "interactions"])
def test_unknown_extension_is_an_input_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(INTERACTIONS_HEADER + "\n" + GOOD + "\n")
    with pytest.raises(InputError, match="unknown format") as info:
        read_interactions(path)
    assert str(path) in str(info.value)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_interactions(tmp_path / "nope.csv")


def test_tsv_is_read(tmp_path: Path) -> None:
    path = tmp_path / "i.tsv"
    path.write_text("customer_id\tproduct_id\ttimestamp\nc1\tp1\t2024-01-01\n")
    frame, _ = read_interactions(path)
    assert frame.row(0)[:2] == ("c1", "p1")


# ---------------------------------------------------------------------------------------------
# Catalog and customers


def test_duplicate_product_id_in_catalog_is_an_input_error(write_csv: WriteCsv) -> None:
    path = write_csv("catalog.csv", ["product_id,title", "p1,Hat", "p2,Scarf", "p1,Another hat"])
    with pytest.raises(InputError, match=r"product_id 'p1' appears more than once") as info:
        read_catalog(path)
    assert str(path) in str(info.value)


def test_extra_catalog_columns_are_kept_as_attributes(write_csv: WriteCsv) -> None:
    path = write_csv(
        "catalog.csv",
        ["product_id,title,brand,category,colour", "p1,Hat,Acme,hats,red", "p2,Scarf,Zed,,blue"],
    )
    frame, _ = read_catalog(path)
    assert {"brand", "colour"} <= set(frame.columns)
    assert frame["brand"].to_list() == ["Acme", "Zed"]
    assert frame["colour"].to_list() == ["red", "blue"]
    # and the schema's optional columns were filled in
    assert frame["category"].to_list() == ["hats", "uncategorized"]
    assert frame["in_stock"].to_list() == [True, True]
    assert frame["price"].to_list() == [None, None]


def test_extra_parquet_catalog_columns_keep_their_types(tmp_path: Path) -> None:
    path = tmp_path / "catalog.parquet"
    pl.DataFrame(
        {"product_id": ["p1", "p2"], "in_stock": [False, None], "weight_g": [120, 80]}
    ).write_parquet(path)
    frame, _ = read_catalog(path)
    assert frame["weight_g"].dtype == pl.Int64
    assert frame["weight_g"].to_list() == [120, 80]
    assert frame["in_stock"].to_list() == [False, True]  # null -> default True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("false", False),
        ("TRUE", True),
        ("False", False),
        ("1", True),
        ("0", False),
        ("yes", True),
        ("no", False),
        ("Y", True),
        ("n", False),
        ("", True),  # missing -> default
    ],
)
def test_in_stock_booleans(write_csv: WriteCsv, text: str, expected: bool) -> None:
    path = write_csv("catalog.csv", ["product_id,in_stock", f"p1,{text}"])
    frame, report = read_catalog(path)
    assert report.rows_kept == 1
    assert frame["in_stock"].to_list() == [expected]


def test_bad_in_stock_is_reported(write_csv: WriteCsv) -> None:
    path = write_csv("catalog.csv", ["product_id,in_stock", "p1,yes", "p2,maybe", "p3,2", "p4,no"])
    frame, report = read_catalog(path, on_error="skip")
    assert frame["product_id"].to_list() == ["p1", "p4"]
    assert report.dropped == {"not a boolean in_stock": 2}
    assert [(e.where, e.reason) for e in report.examples] == [
        ("line 3", "not a boolean in_stock 'maybe' (expected true or false)"),
        ("line 4", "not a boolean in_stock '2' (expected true or false)"),
    ]
    with pytest.raises(ValidationFailed, match=r"line 3: not a boolean in_stock 'maybe'"):
        read_catalog(path)


def test_negative_price_is_reported(write_csv: WriteCsv) -> None:
    path = write_csv("catalog.csv", ["product_id,price", "p1,9.99", "p2,-1", "p3,"])
    frame, report = read_catalog(path, on_error="skip")
    assert frame["price"].to_list() == [9.99, None]
    assert [(e.where, e.reason) for e in report.examples] == [("line 3", "negative price '-1'")]


def test_customers_dates_and_consent(write_csv: WriteCsv) -> None:
    path = write_csv(
        "customers.csv",
        [
            "customer_id,signup_date,consent_personalization,tier",
            "c1,2023-05-01,no,gold",
            "c2,,,",
            "c3,05/01/2023,yes,silver",
        ],
    )
    frame, report = read_customers(path, on_error="skip")
    assert frame["customer_id"].to_list() == ["c1", "c2"]
    assert frame["signup_date"].to_list() == [date(2023, 5, 1), None]
    assert frame["consent_personalization"].to_list() == [False, True]
    assert [(e.where, e.reason) for e in report.examples] == [
        ("line 4", "unparseable signup_date '05/01/2023' (expected YYYY-MM-DD)")
    ]

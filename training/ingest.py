"""Read and validate input files (CSV or Parquet) into typed polars frames.

Every bad record is reported with its file, its line (CSV) or row (Parquet) and the reason;
``on_error="fail"`` raises on the first bad file, ``"skip"`` drops bad rows and counts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from formats.errors import RecsvcError
from formats.events import INTERACTION_TYPES
from formats.ids import MAX_ID_LENGTH
from formats.limits import MAX_FUTURE_MS, MIN_TRAINING_TS_MS
from training.schema import CATALOG, CUSTOMERS, INTERACTIONS, Column

OnError = Literal["fail", "skip"]

# Timestamp layouts accepted in text files, tried in order; numbers are Unix epoch seconds.
_TIMESTAMP_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")
_MAX_EXAMPLES = 20
_NO_REASON = pl.lit(None, dtype=pl.Utf8)


class InputError(RecsvcError):
    """A file that cannot be read at all: missing, unknown format, missing a required column."""


@dataclass(frozen=True)
class RowError:
    file: str
    where: str  # "line 17" (CSV, counting the header as line 1) or "row 17" (Parquet, 1-based)
    reason: str

    def __str__(self) -> str:
        return f"{self.file}, {self.where}: {self.reason}"


@dataclass
class ValidationReport:
    file: str
    rows_read: int = 0
    rows_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason (without value) -> rows
    examples: list[RowError] = field(default_factory=list)

    @property
    def rows_dropped(self) -> int:
        return self.rows_read - self.rows_kept

    def summary(self) -> str:
        text = f"{self.file}: read {self.rows_read:,} rows, kept {self.rows_kept:,}"
        if self.dropped:
            reasons = ", ".join(f"{n:,} {reason}" for reason, n in sorted(self.dropped.items()))
            text += f", dropped {self.rows_dropped:,} ({reasons})"
        return text


class ValidationFailed(RecsvcError):
    """Bad records found with ``on_error="fail"``; the message lists them."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        lines = [str(e) for e in report.examples]
        more = report.rows_dropped - len(lines)
        if more > 0:
            lines.append(f"... and {more:,} more bad rows")
        lines.append("(use --on-error=skip to drop bad rows and continue)")
        super().__init__(
            f"{report.rows_dropped:,} bad rows in {report.file}:\n  " + "\n  ".join(lines)
        )


def read_frame(path: Path) -> tuple[pl.DataFrame, bool]:
    """Read a CSV (all columns as text) or Parquet file, or a directory of exported events;
    returns (frame, is_csv)."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():  # the output of `recsvc events export`
        from formats.exported import CHECKPOINT, read_exported

        if not (path / CHECKPOINT).exists():
            raise InputError(f"{path}: a directory, but not one written by `recsvc events export`")
        return read_exported(path), False
    name = path.name.lower()
    try:
        if name.endswith((".csv", ".csv.gz", ".tsv")):
            sep = "\t" if name.endswith(".tsv") else ","
            return pl.read_csv(path, infer_schema=False, separator=sep), True
        if name.endswith((".parquet", ".pq")):
            return pl.read_parquet(path), False
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    raise InputError(f"{path}: unknown format (expected .csv, .tsv or .parquet)")


def _as_text(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Utf8).str.strip_chars()


def _parse(column: Column, dtype: pl.DataType, now_ms: int) -> tuple[pl.Expr, pl.Expr]:
    """Return (parsed value, reason-or-null) expressions for one column."""
    name = column.name
    raw = pl.col(name)
    text = _as_text(name)
    shown = pl.lit("'") + text.fill_null("") + pl.lit("'")
    value: pl.Expr
    reason: pl.Expr

    if column.kind == "id":
        value = text
        empty = text.is_null() | (text == "")
        reason = (
            pl.when(empty)
            .then(pl.lit(f"empty {name}"))
            .when(text.str.len_chars() > MAX_ID_LENGTH)
            .then(pl.lit(f"{name} longer than {MAX_ID_LENGTH} characters"))
            .otherwise(_NO_REASON)
        )
    elif column.kind == "timestamp":
        if isinstance(dtype, pl.Datetime):
            value = (
                raw.dt.replace_time_zone("UTC") if dtype.time_zone is None else raw
            ).dt.convert_time_zone("UTC")
            value = value.dt.cast_time_unit("us")
        elif isinstance(dtype, pl.Date):
            value = raw.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        elif dtype.is_numeric():
            value = pl.from_epoch(raw.cast(pl.Int64), time_unit="s").dt.replace_time_zone("UTC")
        else:
            candidates = [
                text.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC")
                for f in _TIMESTAMP_FORMATS
            ]
            epoch = pl.from_epoch(text.cast(pl.Int64, strict=False), time_unit="s")
            candidates.append(epoch.dt.replace_time_zone("UTC"))
            value = pl.coalesce(candidates)
        bad = pl.lit(f"unparseable {name} ") + shown
        # As the event API: a future time is a clock bug, and one such row would make every
        # real-time event look older than the training data (fold-in would never run).
        ms = value.dt.epoch("ms")
        reason = (
            pl.when(value.is_null())
            .then(bad)
            .when(ms > now_ms + MAX_FUTURE_MS)
            .then(pl.lit(f"{name} in the future ") + shown)
            .when(ms < MIN_TRAINING_TS_MS)
            .then(pl.lit(f"{name} before 1970 ") + shown)
            .otherwise(_NO_REASON)
        )
    elif column.kind == "event":
        value = text.str.to_lowercase()
        if column.default is not None:
            value = value.fill_null(pl.lit(column.default))
        reason = (
            pl.when(~value.is_in(list(INTERACTION_TYPES)))
            .then(
                pl.lit(f"unknown {name} ")
                + shown
                + pl.lit(f" (expected one of {', '.join(INTERACTION_TYPES)})")
            )
            .otherwise(_NO_REASON)
        )
    elif column.kind == "nonneg_float":
        parsed = (
            raw.cast(pl.Float64, strict=False)
            if dtype.is_numeric()
            else text.cast(pl.Float64, strict=False)
        )
        unparseable = parsed.is_null() & text.is_not_null() & (text != "")
        value = parsed if column.default is None else parsed.fill_null(column.default)
        reason = (
            pl.when(unparseable)
            .then(pl.lit(f"unparseable {name} ") + shown)
            .when(parsed.is_nan() | parsed.is_infinite())
            .then(pl.lit(f"non-finite {name}"))
            .when(parsed < 0)
            .then(pl.lit(f"negative {name} ") + shown)
            .when(parsed > (column.maximum if column.maximum is not None else float("inf")))
            .then(pl.lit(f"{name} above the maximum {column.maximum:g} ") + shown)
            .otherwise(_NO_REASON)
        )
    elif column.kind == "bool":
        if dtype == pl.Boolean:
            value = raw
        else:
            low = text.str.to_lowercase()
            value = (
                pl.when(low.is_in(list(_TRUE))).then(True).when(low.is_in(list(_FALSE))).then(False)
            )
        missing = text.is_null() | (text == "")
        if column.default is not None:
            value = pl.when(missing).then(pl.lit(column.default)).otherwise(value)
        reason = (
            pl.when(value.is_null() & ~missing)
            .then(pl.lit(f"not a boolean {name} ") + shown + pl.lit(" (expected true or false)"))
            .otherwise(_NO_REASON)
        )
    elif column.kind == "date":
        if isinstance(dtype, pl.Date):
            value = raw
        elif isinstance(dtype, pl.Datetime):
            value = raw.dt.date()
        else:
            value = text.str.to_date("%Y-%m-%d", strict=False)
        missing = text.is_null() | (text == "")
        reason = (
            pl.when(value.is_null() & ~missing)
            .then(pl.lit(f"unparseable {name} ") + shown + pl.lit(" (expected YYYY-MM-DD)"))
            .otherwise(_NO_REASON)
        )
    elif column.kind == "str":
        value = text if column.default is None else text.fill_null(pl.lit(column.default))
        reason = _NO_REASON
    else:  # pragma: no cover - schema typo
        raise ValueError(f"unknown column kind {column.kind!r}")
    return value.alias(name), reason.alias(f"__reason_{name}")


def _first_lines(frame: pl.DataFrame) -> np.ndarray:
    """The physical line on which each CSV record starts."""
    text_cols = [c for c, t in frame.schema.items() if t == pl.Utf8]
    if not text_cols:
        return np.arange(frame.height) + 2
    newlines = (
        frame.select(
            pl.sum_horizontal([pl.col(c).str.count_matches("\n").fill_null(0) for c in text_cols])
        )
        .to_series()
        .to_numpy()
        .astype(np.int64)
    )
    return np.arange(frame.height) + 2 + np.cumsum(newlines) - newlines


def validate(
    frame: pl.DataFrame,
    columns: Sequence[Column],
    file: str,
    on_error: OnError = "fail",
    is_csv: bool = True,
    now: datetime | None = None,
) -> tuple[pl.DataFrame, ValidationReport]:
    """Check and type ``frame`` against ``columns``; extra columns are kept as attributes.
    Timestamps after ``now`` (default: the clock) plus a few minutes are rejected."""
    now_ms = int((now or datetime.now(UTC)).timestamp() * 1000)
    missing = [c.name for c in columns if c.required and c.name not in frame.columns]
    if missing:
        raise InputError(
            f"{file}: missing required column(s) {', '.join(missing)}; "
            f"found {', '.join(frame.columns) or 'none'}"
        )
    for c in columns:
        if c.name not in frame.columns:
            frame = frame.with_columns(pl.lit(c.default).alias(c.name))
    parsed: list[pl.Expr] = []
    reasons: list[pl.Expr] = []
    for c in columns:
        value, reason = _parse(c, frame.schema[c.name], now_ms)
        parsed.append(value)
        reasons.append(reason)
    known = {c.name for c in columns}
    extras = [pl.col(n) for n in frame.columns if n not in known]
    typed = frame.select(
        *parsed,
        *extras,
        pl.coalesce(reasons).alias("__reason"),
        pl.int_range(pl.len()).alias("__row"),
    )
    report = ValidationReport(file=file, rows_read=typed.height)
    bad = typed.filter(pl.col("__reason").is_not_null())
    if bad.height:
        # Count by reason without the offending value, so the summary groups like with like.
        kinds = bad.select(pl.col("__reason").str.replace(r" '.*$", "").alias("k"))["k"]
        report.dropped = dict(kinds.value_counts().iter_rows())
        shown = bad.head(_MAX_EXAMPLES).select("__row", "__reason")
        if is_csv:
            # Physical line: the header is line 1, and quoted fields may hold newlines.
            lines = _first_lines(frame)
            report.examples = [
                RowError(file, f"line {int(lines[r])}", why) for r, why in shown.iter_rows()
            ]
        else:
            report.examples = [RowError(file, f"row {r + 1}", why) for r, why in shown.iter_rows()]
    good = typed.filter(pl.col("__reason").is_null()).drop("__reason", "__row")
    report.rows_kept = good.height
    if bad.height and on_error == "fail":
        raise ValidationFailed(report)
    return good, report


def _read(
    path: Path, columns: Sequence[Column], on_error: OnError
) -> tuple[pl.DataFrame, ValidationReport]:
    frame, is_csv = read_frame(path)
    return validate(frame, columns, str(path), on_error, is_csv)


def read_interactions(
    path: Path, on_error: OnError = "fail"
) -> tuple[pl.DataFrame, ValidationReport]:
    return _read(path, INTERACTIONS, on_error)


def read_catalog(path: Path, on_error: OnError = "fail") -> tuple[pl.DataFrame, ValidationReport]:
    frame, report = _read(path, CATALOG, on_error)
    dupes = frame.filter(pl.col("product_id").is_duplicated())
    if dupes.height:
        first = dupes["product_id"][0]
        raise InputError(f"{path}: product_id {first!r} appears more than once; ids must be unique")
    return frame, report


def read_customers(path: Path, on_error: OnError = "fail") -> tuple[pl.DataFrame, ValidationReport]:
    return _read(path, CUSTOMERS, on_error)

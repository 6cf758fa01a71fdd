"""The customers file of `recsvc recommend-batch`: ids, checked line by line."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from formats.errors import RecsvcError
from formats.ids import id_problem

MAX_LISTED = 20


class CustomersFileError(RecsvcError):
    """The customers file cannot be used; the message lists the bad lines."""


def read_customer_ids(path: Path) -> list[str]:
    """Customer ids from a Parquet or CSV file with a ``customer_id`` column, or a text file
    of one id per line; duplicates keep their first place. Bad ids: CustomersFileError
    naming each line (1 = the CSV header or a text file's first line)."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise CustomersFileError(f"{path}: no such file")
    try:
        if suffix == ".parquet":
            frame = pl.read_parquet(path)
            first_line = 1  # rows, not lines: row 1 is the first
        elif suffix == ".csv":
            frame = pl.read_csv(path, infer_schema=False)
            first_line = 2  # line 1 is the header
        else:
            lines = path.read_text().splitlines()
            frame = pl.DataFrame({"customer_id": lines}, schema={"customer_id": pl.Utf8})
            first_line = 1
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise CustomersFileError(f"{path}: cannot read: {exc}") from None
    if "customer_id" not in frame.columns:
        raise CustomersFileError(
            f"{path}: no customer_id column (columns: {', '.join(frame.columns)})"
        )
    ids = frame["customer_id"].cast(pl.Utf8).to_list()
    problems = []
    for n, value in enumerate(ids):
        problem = id_problem(value or "", "customer_id")
        if problem:
            problems.append(f"{path}, line {n + first_line}: {problem}")
    if problems:
        more = len(problems) - MAX_LISTED
        shown = "\n".join(problems[:MAX_LISTED]) + (f"\n... and {more} more" if more > 0 else "")
        raise CustomersFileError(f"{len(problems)} bad customer ids in {path}:\n{shown}")
    if not ids:
        raise CustomersFileError(f"{path}: no customers")
    return list(dict.fromkeys(ids))

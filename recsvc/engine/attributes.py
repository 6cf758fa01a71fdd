"""Catalog attributes for filters: per product, the value of each extra catalog column.

A numeric column keeps float64 values (NaN: missing or not a number). Any other column keeps
an int32 code per product into its distinct values (-1: missing); a condition becomes the set
of codes it accepts, so testing a few hundred candidates is one table lookup. For a multi-valued
column (``formats.attributes``), a value is accepted when it equals the whole value or one of
its items ("Action" matches "Action Comedy").

Products created live add rows (and may add values or columns): arrays are replaced by longer
copies, never shrunk, so a request holding an older array never indexes past its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from formats.attributes import (
    STANDARD_COLUMNS,
    AttributeColumn,
    as_text,
    attribute_columns,
    parse_number,
)
from formats.errors import InvalidRequest
from formats.types import AttributeCondition


@dataclass
class Column:
    spec: AttributeColumn
    numbers: np.ndarray  # float64 per product (numeric columns)
    codes: np.ndarray  # int32 per product into ``values`` (other columns); -1 = missing
    values: list[str] = field(default_factory=list)
    code_of: dict[str, int] = field(default_factory=dict)
    with_item: dict[str, set[int]] = field(default_factory=dict)  # multi: item -> codes

    @property
    def numeric(self) -> bool:
        return self.spec.kind == "numeric"

    def code(self, value: str) -> int:
        """The code of ``value``, added when new."""
        found = self.code_of.get(value)
        if found is not None:
            return found
        code = len(self.values)
        self.values.append(value)
        if self.spec.kind == "multi":
            for item in self.spec.items(value):
                self.with_item.setdefault(item, set()).add(code)
        self.code_of[value] = code  # last: readers look codes up here
        return code

    def accepted(self, values: tuple[str, ...]) -> np.ndarray:
        codes: set[int] = set()
        for v in values:
            if v in self.code_of:
                codes.add(self.code_of[v])
            codes |= self.with_item.get(v, set())
        return np.fromiter(codes, dtype=np.int32, count=len(codes))


class AttributeTable:
    def __init__(self, products: pl.DataFrame) -> None:
        self.n = products.height
        self.columns: dict[str, Column] = {}
        for spec in attribute_columns(products):
            series = products[spec.name]
            if spec.kind == "numeric":
                text = as_text(series) if not series.dtype.is_numeric() else series
                numbers = text.cast(pl.Float64, strict=False).fill_null(np.nan).to_numpy()
                column = Column(spec, np.asarray(numbers, dtype=np.float64).copy(), _no_codes(0))
                column.numbers[~np.isfinite(column.numbers)] = np.nan
            else:
                column = Column(spec, _no_numbers(0), np.full(self.n, -1, dtype=np.int32))
                text = as_text(series)
                distinct = text.drop_nulls().unique(maintain_order=True).to_list()
                for value in distinct:
                    column.code(value)
                mapping = pl.DataFrame(
                    {"v": distinct, "code": np.arange(len(distinct), dtype=np.int32)},
                    schema={"v": pl.Utf8, "code": pl.Int32},
                )
                codes = pl.DataFrame({"v": text}).join(mapping, on="v", how="left")["code"]
                column.codes = codes.fill_null(-1).to_numpy().astype(np.int32, copy=True)
            self.columns[spec.name] = column

    @property
    def names(self) -> list[str]:
        return sorted(self.columns)

    def mask(self, idx: np.ndarray, conditions: tuple[AttributeCondition, ...]) -> np.ndarray:
        """Which of the products ``idx`` (all >= 0) meet every condition."""
        ok = np.ones(len(idx), dtype=bool)
        for i, condition in enumerate(conditions):
            column = self._column(condition, i)
            if condition.is_range:
                if not column.numeric:
                    raise InvalidRequest(
                        f"filter.attributes[{i}] ({condition.name}): not a numeric attribute; "
                        "use equals or any_of"
                    )
                values = column.numbers[idx]
                with np.errstate(invalid="ignore"):  # NaN (missing) never matches a bound
                    if condition.min is not None:
                        ok &= values >= condition.min
                    if condition.max is not None:
                        ok &= values <= condition.max
            elif column.numeric:
                wanted = [parse_number(v) for v in condition.values]
                if any(np.isnan(w) for w in wanted):
                    raise InvalidRequest(
                        f"filter.attributes[{i}] ({condition.name}): a numeric attribute; "
                        f"{', '.join(repr(v) for v in condition.values)} is not all numbers"
                    )
                values = column.numbers[idx]
                ok &= np.logical_or.reduce([values == w for w in wanted])
            else:
                accepted = column.accepted(condition.values)
                table = np.zeros(len(column.values) + 1, dtype=bool)
                table[accepted.astype(np.int64) + 1] = True  # code -1 (missing) never matches
                ok &= table[column.codes[idx] + 1]
        return ok

    def check(self, conditions: tuple[AttributeCondition, ...]) -> None:
        """InvalidRequest when a condition names no attribute of the catalog."""
        for i, condition in enumerate(conditions):
            self._column(condition, i)

    def _column(self, condition: AttributeCondition, i: int) -> Column:
        column = self.columns.get(condition.name)
        if column is not None:
            return column
        if condition.name in STANDARD_COLUMNS:
            raise InvalidRequest(
                f"filter.attributes[{i}]: {condition.name!r} has a filter of its own "
                "(include_categories, min_price/max_price, in_stock_only)"
            )
        known = ", ".join(self.names) or "none"
        raise InvalidRequest(
            f"filter.attributes[{i}]: the catalog has no attribute {condition.name!r} "
            f"(attributes: {known})"
        )

    # -- products created or described live ------------------------------------------------
    def grow(self, n: int) -> None:
        """Room for products up to index ``n - 1`` (new rows are missing everywhere)."""
        if n <= self.n:
            return
        for column in self.columns.values():
            if column.numeric:
                column.numbers = np.concatenate([column.numbers, np.full(n - self.n, np.nan)])
            else:
                extra = np.full(n - self.n, -1, dtype=np.int32)
                column.codes = np.concatenate([column.codes, extra])
        self.n = n

    def set(self, idx: int, attributes: dict[str, str]) -> None:
        """Set (or, with "", remove) attribute values of product ``idx``; a name the catalog
        does not have becomes a new categorical column."""
        for name, raw in attributes.items():
            value = raw.strip()
            column = self.columns.get(name)
            if column is None:
                if not value:
                    continue
                column = Column(
                    AttributeColumn(name, "categorical"),
                    _no_numbers(0),
                    np.full(self.n, -1, dtype=np.int32),
                )
                self.columns[name] = column
            if column.numeric:
                column.numbers[idx] = parse_number(value) if value else np.nan
            else:
                column.codes[idx] = column.code(value) if value else -1


def _no_numbers(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def _no_codes(n: int) -> np.ndarray:
    return np.full(n, -1, dtype=np.int32)

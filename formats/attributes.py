"""Catalog attributes: the extra columns of a catalog (beyond id, title, category, price and
stock) and what kind of values each holds.

Training (the content model) and serving (attribute filters, products created live) infer the
kinds with the same function from the same products table, so they always agree:

- ``numeric``: at least 95% of the values are numbers (CSV columns arrive as text: "1995"
  counts; the rest, e.g. "unknown", count as missing);
- ``multi``: a set of items per product, e.g. tags "red|wool" or genres "Action Comedy": some
  value holds several items, and there are no more distinct items than distinct values when
  they are split on ``|``, ``;`` or ``,`` (at most half as many when split on whitespace: a
  small vocabulary combined in many ways, unlike names such as "Green Valley");
- ``text``: free text (more than 10 words per value on average), e.g. a description;
- ``categorical``: anything else (one value per product, e.g. brand).

Items of a multi-valued or text column are split on the first of ``|``, ``;``, ``,`` that
appears in the column, else on whitespace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import polars as pl

# Columns with a meaning of their own (the bundle adds popularity); the rest are attributes.
STANDARD_COLUMNS: Final = frozenset(
    {"product_id", "title", "category", "price", "in_stock", "popularity"}
)
KINDS: Final = ("numeric", "categorical", "multi", "text")
SEPARATORS: Final = ("|", ";", ",")
NUMERIC_MAX_OTHER: Final = 0.05  # share of non-numbers a numeric column may hold
TEXT_MIN_ITEMS: Final = 10.0  # mean items per value above which a column is free text


@dataclass(frozen=True)
class AttributeColumn:
    name: str
    kind: str  # one of KINDS
    separator: str = " "  # splits multi and text values into items

    def items(self, value: str) -> list[str]:
        return split_items(value, self.separator)


def split_items(value: str, separator: str) -> list[str]:
    parts = value.split(separator) if separator != " " else value.split()
    return [p.strip() for p in parts if p.strip()]


def parse_number(value: str | float | int | None) -> float:
    """The value as a finite number, or NaN (missing, not a number, infinite)."""
    if value is None:
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def as_text(series: pl.Series) -> pl.Series:
    """A column as stripped strings (lists joined with "|"), null when empty."""
    if isinstance(series.dtype, pl.List):
        series = series.cast(pl.List(pl.Utf8)).list.join("|")
    text = series.cast(pl.Utf8).str.strip_chars()
    return pl.select(pl.when(text.str.len_chars() > 0).then(text)).to_series().alias(series.name)


def attribute_names(products: pl.DataFrame) -> list[str]:
    return [c for c in products.columns if c not in STANDARD_COLUMNS and not c.startswith("_")]


def infer_column(series: pl.Series) -> AttributeColumn:
    """The kind of one attribute column (see the module docstring)."""
    name = series.name
    if series.dtype.is_numeric():
        return AttributeColumn(name, "numeric")
    text = as_text(series).drop_nulls()
    if text.len() == 0:
        return AttributeColumn(name, "categorical")
    numbers = text.cast(pl.Float64, strict=False)
    if series.dtype != pl.Boolean and numbers.null_count() <= NUMERIC_MAX_OTHER * text.len():
        return AttributeColumn(name, "numeric")
    separator = next((s for s in SEPARATORS if text.str.contains(s, literal=True).any()), " ")
    if separator == " ":
        items = text.str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
    else:
        items = text.str.split(separator).list.eval(
            pl.element().str.strip_chars().filter(pl.element() != "")
        )
    counts = items.list.len().cast(pl.Float64).to_numpy()
    mean_items = float(counts.mean()) if len(counts) else 0.0
    if mean_items > TEXT_MIN_ITEMS:
        return AttributeColumn(name, "text", separator)
    distinct_items = items.explode().drop_nulls().n_unique()
    ratio = 2 if separator == " " else 1
    if len(counts) and counts.max() >= 2 and distinct_items * ratio <= text.n_unique():
        return AttributeColumn(name, "multi", separator)
    return AttributeColumn(name, "categorical", separator)


def attribute_columns(products: pl.DataFrame) -> list[AttributeColumn]:
    """Every attribute column of a products table, with its kind, in table order."""
    return [infer_column(products[name]) for name in attribute_names(products)]

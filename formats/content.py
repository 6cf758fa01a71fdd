"""The content model: a product's catalog attributes mapped into the model's item space.

Training fits it on the products that have interactions (``training/content.py``) and gives
every product without any its vector; serving uses it for products created live
(``UpdateProducts``). Both featurize with :func:`featurize`, so a live product gets exactly the
vector training would have given it.

Features, each a name in ``vocabulary``:

- ``category=<name>``;
- ``title:<word>``: the title's words (letters and digits, at least 2, lower case);
- per attribute column (``formats.attributes``): ``<col>=<value>`` for categorical and
  multi-valued columns, ``<col>:<item>`` for the items of multi-valued and the words of text
  columns, and for numeric ones ``<col>`` (the z-score), ``<col>#<bin>`` (a quantile bin) and
  ``<col>?`` (missing).

A bag of items or words weighs 1/sqrt(its size), so a long title does not outweigh the
category. The vector is ``features @ weights + bias`` (ridge regression, ``bias`` the mean
item vector). Stored in a bundle as ``extras["content"]``, plain arrays (no pickle):
``columns``, ``kinds``, ``separators`` (str[C]); ``numeric_mean``, ``numeric_std`` (float64[C],
NaN for non-numeric columns); ``numeric_edges`` (float64[C, B], NaN-padded bin edges);
``vocabulary`` (str[F]); ``weights`` (float32[F, k]); ``bias`` (float32[k]).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from formats.attributes import AttributeColumn

EXTRA: Final = "content"  # the bundle extra holding the model
WORD: Final = r"[\p{L}\p{N}]{2,}"


@dataclass(frozen=True)
class ContentSpec:
    """How products become feature rows: the columns read and the feature vocabulary."""

    columns: tuple[AttributeColumn, ...]
    vocabulary: tuple[str, ...]
    numeric_mean: np.ndarray  # per column, NaN unless numeric
    numeric_std: np.ndarray
    numeric_edges: np.ndarray  # (columns, bins - 1), NaN-padded
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {t: i for i, t in enumerate(self.vocabulary)})

    @property
    def n_features(self) -> int:
        return len(self.vocabulary)


def _rows() -> pl.Expr:
    return pl.int_range(pl.len(), dtype=pl.UInt32).alias("row")


def _text(frame: pl.DataFrame, name: str) -> pl.Expr:
    if name not in frame.columns:
        return pl.lit(None, dtype=pl.Utf8)
    dtype = frame.schema[name]
    col = pl.col(name)
    if isinstance(dtype, pl.List):
        col = col.cast(pl.List(pl.Utf8)).list.join("|")
    return col.cast(pl.Utf8).str.strip_chars()


def _bag(frame: pl.DataFrame, items: pl.Expr, prefix: str) -> pl.DataFrame:
    """(row, token, weight): each distinct item once, weighing 1/sqrt(items of the row)."""
    bag = frame.select(_rows(), items.list.unique().alias("items"))
    bag = bag.with_columns(
        (1.0 / pl.col("items").list.len().cast(pl.Float32).sqrt()).alias("weight")
    )
    return (
        bag.explode("items")
        .drop_nulls("items")
        .select("row", (pl.lit(prefix) + pl.col("items")).alias("token"), "weight")
    )


def _items(text: pl.Expr, separator: str) -> pl.Expr:
    lower = text.str.to_lowercase()
    if separator == " ":
        parts = lower.str.split(" ")
    else:
        parts = lower.str.split(separator).list.eval(pl.element().str.strip_chars())
    return parts.list.eval(pl.element().filter(pl.element().str.len_chars() > 0))


def token_table(frame: pl.DataFrame, columns: Sequence[AttributeColumn]) -> pl.DataFrame:
    """Every non-numeric feature token of every row: (row, token, weight)."""
    one = pl.lit(1.0, dtype=pl.Float32).alias("weight")
    category = _text(frame, "category").fill_null("uncategorized")
    parts = [
        frame.select(_rows(), (pl.lit("category=") + category).alias("token"), one),
        _bag(frame, _text(frame, "title").str.to_lowercase().str.extract_all(WORD), "title:"),
    ]
    for c in columns:
        text = _text(frame, c.name)
        if c.kind in ("categorical", "multi"):
            whole = frame.select(_rows(), (pl.lit(f"{c.name}=") + text).alias("token"), one)
            parts.append(whole.drop_nulls("token"))
        if c.kind == "multi":
            parts.append(_bag(frame, _items(text, c.separator), f"{c.name}:"))
        elif c.kind == "text":
            parts.append(_bag(frame, text.str.to_lowercase().str.extract_all(WORD), f"{c.name}:"))
    schema = {"row": pl.UInt32, "token": pl.Utf8, "weight": pl.Float32}
    return pl.concat([p.cast(schema) for p in parts], how="vertical")  # type: ignore[arg-type]


def numeric_values(frame: pl.DataFrame, name: str) -> np.ndarray:
    """A column as float64 (NaN where missing or not a number)."""
    if name not in frame.columns:
        return np.full(frame.height, np.nan)
    values = frame[name]
    if not values.dtype.is_numeric():
        values = values.cast(pl.Utf8).str.strip_chars().cast(pl.Float64, strict=False)
    out = values.cast(pl.Float64).fill_null(np.nan).to_numpy().astype(np.float64, copy=True)
    out[~np.isfinite(out)] = np.nan
    return out


def numeric_tokens(spec: ContentSpec, frame: pl.DataFrame) -> list[tuple[np.ndarray, str]]:
    """Per numeric column: (values, column name) of the rows of ``frame``."""
    return [(numeric_values(frame, c.name), c.name) for c in spec.columns if c.kind == "numeric"]


def featurize(frame: pl.DataFrame, spec: ContentSpec) -> csr_matrix:
    """Feature rows (products x vocabulary) of the products in ``frame``."""
    n = frame.height
    tokens = token_table(frame, spec.columns)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    if tokens.height:
        vocab = pl.DataFrame(
            {"token": list(spec.vocabulary), "col": np.arange(spec.n_features, dtype=np.int32)},
            schema={"token": pl.Utf8, "col": pl.Int32},
        )
        known = tokens.join(vocab, on="token", how="inner")
        rows.append(known["row"].to_numpy().astype(np.int64))
        cols.append(known["col"].to_numpy().astype(np.int64))
        vals.append(known["weight"].to_numpy().astype(np.float32))
    for i, c in enumerate(spec.columns):
        if c.kind != "numeric":
            continue
        x = numeric_values(frame, c.name)
        missing = np.isnan(x)
        z = np.where(missing, 0.0, (x - spec.numeric_mean[i]) / spec.numeric_std[i])
        edges = spec.numeric_edges[i][~np.isnan(spec.numeric_edges[i])]
        bins = np.searchsorted(edges, np.where(missing, 0.0, x), side="right")
        names = [f"{c.name}#{b}" for b in bins.tolist()]
        feature = [
            spec.index.get(f"{c.name}?" if m else name, -1)
            for m, name in zip(missing.tolist(), names, strict=True)
        ]
        present = np.array(feature, dtype=np.int64)
        keep = present >= 0
        rows.append(np.flatnonzero(keep))
        cols.append(present[keep])
        vals.append(np.ones(int(keep.sum()), dtype=np.float32))
        zi = spec.index.get(c.name)
        if zi is not None:
            rows.append(np.arange(n))
            cols.append(np.full(n, zi, dtype=np.int64))
            vals.append(z.astype(np.float32))
    if not rows:
        return csr_matrix((n, spec.n_features), dtype=np.float32)
    m = csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, spec.n_features),
        dtype=np.float32,
    )
    m.sum_duplicates()
    return m


@dataclass(frozen=True)
class ContentModel:
    spec: ContentSpec
    weights: np.ndarray  # (features, factors) float32
    bias: np.ndarray  # (factors,) float32

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Item vectors (float32) of the products in ``frame`` (title, category, attributes)."""
        x = featurize(frame, self.spec)
        out: np.ndarray = np.asarray(x @ self.weights, dtype=np.float32) + self.bias
        return out

    def predict_one(self, title: str, category: str, attributes: Mapping[str, str]) -> np.ndarray:
        row: dict[str, list[str | None]] = {"title": [title], "category": [category]}
        for c in self.spec.columns:
            row[c.name] = [attributes.get(c.name)]
        frame = pl.DataFrame(row, schema={name: pl.Utf8 for name in row})
        vector: np.ndarray = self.predict(frame)[0]
        return vector

    def to_arrays(self) -> dict[str, np.ndarray]:
        s = self.spec
        return {
            "columns": np.array([c.name for c in s.columns], dtype=np.str_),
            "kinds": np.array([c.kind for c in s.columns], dtype=np.str_),
            "separators": np.array([c.separator for c in s.columns], dtype=np.str_),
            "numeric_mean": np.asarray(s.numeric_mean, dtype=np.float64),
            "numeric_std": np.asarray(s.numeric_std, dtype=np.float64),
            "numeric_edges": np.asarray(s.numeric_edges, dtype=np.float64),
            "vocabulary": np.array(s.vocabulary, dtype=np.str_),
            "weights": np.asarray(self.weights, dtype=np.float32),
            "bias": np.asarray(self.bias, dtype=np.float32),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ContentModel:
        columns = tuple(
            AttributeColumn(str(n), str(k), str(s))
            for n, k, s in zip(
                arrays["columns"].tolist(),
                arrays["kinds"].tolist(),
                arrays["separators"].tolist(),
                strict=True,
            )
        )
        edges = np.asarray(arrays["numeric_edges"], dtype=np.float64)
        spec = ContentSpec(
            columns=columns,
            vocabulary=tuple(str(t) for t in arrays["vocabulary"].tolist()),
            numeric_mean=np.asarray(arrays["numeric_mean"], dtype=np.float64),
            numeric_std=np.asarray(arrays["numeric_std"], dtype=np.float64),
            numeric_edges=edges.reshape(len(columns), -1),
        )
        return cls(
            spec,
            np.asarray(arrays["weights"], dtype=np.float32),
            np.asarray(arrays["bias"], dtype=np.float32),
        )

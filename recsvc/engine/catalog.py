"""The served catalog: every per-product array a request reads, built once per bundle.

Item vectors are kept grouped by category, so a category filter scores a contiguous slice
(copying a 19k-row selection cost 2.4 ms of a 3.4 ms call at 1M products); ``position``
maps a product index to its row there. Stock and price are writable: catalog changes from
the feature store apply in place.

Products created live (``UpdateProducts``) get the indexes after the trained ones and their
vectors in ``live_vectors``, a small side array scored exactly beside the index search (the
FAISS index is never written while requests read it). Per-product arrays grow by replacement
(a longer copy), after which the product's id is published: a request sees a live product
either nowhere or with every array covering it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import polars as pl

from formats.types import Filter
from recsvc.engine.attributes import AttributeTable

# Where a product's vector comes from.
FROM_MODEL, FROM_CONTENT, NO_VECTOR = 0, 1, 2
SMALL = 2048  # candidate arrays up to this size test set membership in Python (np.isin's
# sorting costs ~100 µs even for a few dozen candidates)


def in_set(idx: np.ndarray, members: set[int] | frozenset[int]) -> np.ndarray:
    """``np.isin(idx, members)``, fast for the few hundred candidates of a request."""
    if len(idx) <= SMALL:
        return np.fromiter((i in members for i in idx.tolist()), dtype=bool, count=len(idx))
    return np.isin(idx, np.fromiter(members, dtype=np.int64, count=len(members)))


def in_codes(codes: np.ndarray, allowed: list[int] | np.ndarray, n: int) -> np.ndarray:
    """Which ``codes`` (in -1..n-1; -1 = none) are ``allowed``: a lookup table, no sort."""
    table = np.zeros(n + 1, dtype=bool)
    table[np.asarray(allowed, dtype=np.int64) + 1] = True
    result: np.ndarray = table[codes + 1]
    return result


class Catalog:
    def __init__(
        self,
        products: pl.DataFrame,
        item_factors: np.ndarray,
        repeat_categories: frozenset[str] = frozenset(),
        has_content: bool = False,
        introduced_ms: np.ndarray | None = None,
    ) -> None:
        """``has_content``: products without interactions got vectors from the content model
        (else theirs are unusable); ``introduced_ms``: when each product first appeared."""
        self.product_ids: list[str] = products["product_id"].to_list()
        self.product_index = {pid: i for i, pid in enumerate(self.product_ids)}
        self.n_trained = len(self.product_ids)
        self.titles: list[str] = products["title"].cast(pl.Utf8).fill_null("").to_list()
        categories = products["category"].cast(pl.Utf8).fill_null("uncategorized")
        self.category_names: list[str] = categories.unique(maintain_order=True).to_list()
        code_of = {name: code for code, name in enumerate(self.category_names)}
        self.category_code = code_of
        self.category = np.array([code_of[c] for c in categories.to_list()], dtype=np.int32)
        # Writable copies: UpdateProducts changes them in place.
        self.in_stock = products["in_stock"].fill_null(True).to_numpy().astype(bool, copy=True)
        self.price = products["price"].cast(pl.Float64).fill_null(np.nan).to_numpy().copy()
        self.popularity = products["popularity"].to_numpy().astype(np.float32)
        self.popular_order = np.argsort(-self.popularity, kind="stable").astype(np.int64)
        self.popular_by_category = {
            code: self.popular_order[self.category[self.popular_order] == code]
            for code in range(len(self.category_names))
        }
        self.repeat_categories = repeat_categories
        self.repeat_category = np.isin(
            np.arange(len(self.category_names)),
            [code_of[c] for c in repeat_categories if c in code_of],
        )
        self.by_category = np.argsort(self.category, kind="stable")
        self.position = np.empty_like(self.by_category)
        self.position[self.by_category] = np.arange(len(self.by_category))
        self.grouped_factors = np.ascontiguousarray(item_factors[self.by_category])
        bounds = np.searchsorted(self.category[self.by_category], np.arange(len(code_of) + 1))
        self.category_slice = {c: (int(bounds[c]), int(bounds[c + 1])) for c in range(len(code_of))}
        self.attributes = AttributeTable(products)
        cold = self.popularity <= 0
        self.source = np.where(cold, FROM_CONTENT if has_content else NO_VECTOR, FROM_MODEL)
        self.source = self.source.astype(np.int8)
        self.introduced_ms = (
            np.zeros(self.n_trained, dtype=np.int64)
            if introduced_ms is None
            else np.asarray(introduced_ms, dtype=np.int64).copy()
        )
        self.live_vectors = np.zeros((0, item_factors.shape[1]), dtype=np.float32)
        self.live_category = np.zeros(0, dtype=np.int32)
        self.described = 0  # grows when products are added or described (caches key on it)
        self.change_seq = 0  # catalog changes (stock, price, live products) applied up to this

    @property
    def n_items(self) -> int:
        return len(self.product_ids)

    @property
    def n_live(self) -> int:
        return len(self.product_ids) - self.n_trained

    def vectors(self, idx: np.ndarray | int) -> np.ndarray:
        """Item vectors by product index (trained or live)."""
        n, live = self.n_trained, self.live_vectors
        if np.ndim(idx) == 0:
            i = int(idx)
            row: np.ndarray = self.grouped_factors[self.position[i]] if i < n else live[i - n]
            return row
        idx = np.asarray(idx, dtype=np.int64)
        is_live = idx >= n
        if not len(live) or not is_live.any():
            result: np.ndarray = self.grouped_factors[self.position[idx]]
            return result
        if is_live.all():
            only_live: np.ndarray = live[idx - n]
            return only_live
        out = np.empty((len(idx), self.grouped_factors.shape[1]), dtype=np.float32)
        rows = np.flatnonzero(~is_live)  # integer indexing: boolean setitem is far slower
        out[rows] = self.grouped_factors[self.position[idx[rows]]]
        rows = np.flatnonzero(is_live)
        out[rows] = live[idx[rows] - n]
        return out

    def live_in(self, codes: list[int] | None = None) -> np.ndarray:
        """Indexes of live products (of categories ``codes`` when given)."""
        n = len(self.live_category)
        if codes is None:
            rows = np.arange(n)
        else:
            rows = np.flatnonzero(in_codes(self.live_category, codes, len(self.category_names)))
        return (rows + self.n_trained).astype(np.int64)

    def indexes(self, product_ids: Iterable[str]) -> set[int]:
        return {self.product_index[p] for p in product_ids if p in self.product_index}

    def codes(self, names: frozenset[str]) -> list[int]:
        return [self.category_code[n] for n in names if n in self.category_code]

    def category_of(self, idx: int) -> str:
        return self.category_names[int(self.category[idx])]

    def eligible(self, idx: np.ndarray, filter: Filter, excluded: set[int]) -> np.ndarray:
        """Vectorised filter over candidate product indexes (-1 = no candidate)."""
        ok = idx >= 0
        if excluded:
            ok &= ~in_set(idx, excluded)
        safe = np.maximum(idx, 0)
        cats = self.category[safe]
        if filter.include_categories:
            ok &= in_codes(cats, self.codes(filter.include_categories), len(self.category_names))
        if filter.exclude_categories:
            ok &= ~in_codes(cats, self.codes(filter.exclude_categories), len(self.category_names))
        if filter.in_stock_only:
            ok &= self.in_stock[safe]
        if filter.min_price is not None or filter.max_price is not None:
            price = self.price[safe]
            with np.errstate(invalid="ignore"):  # unknown prices (NaN) never match a bound
                if filter.min_price is not None:
                    ok &= price >= filter.min_price
                if filter.max_price is not None:
                    ok &= price <= filter.max_price
        if filter.attributes:
            ok &= self.attributes.mask(safe, filter.attributes)
        return ok

    # -- changes from the feature store (the caller serializes them) ------------------------
    def set_stock_price(self, idx: int, stock: int | None, price: float | None) -> None:
        if stock is not None:
            self.in_stock[idx] = stock > 0
        if price is not None:
            self.price[idx] = price

    def category_code_of(self, name: str) -> int:
        """The code of category ``name``, added when new (a live product's new category)."""
        code = self.category_code.get(name)
        if code is not None:
            return code
        code = len(self.category_names)
        self.category_names.append(name)
        self.repeat_category = np.append(self.repeat_category, name in self.repeat_categories)
        self.popular_by_category[code] = np.zeros(0, dtype=np.int64)
        self.category_slice[code] = (0, 0)
        self.category_code[name] = code  # last: readers look codes up here
        return code

    def add_products(
        self,
        product_ids: list[str],
        titles: list[str],
        categories: list[int],
        vectors: np.ndarray,
        source: int,
        introduced_ms: list[int],
        stock: list[int | None],
        price: list[float | None],
    ) -> list[int]:
        """Append live products (their attributes set beforehand); returns their indexes."""
        start, m = self.n_items, len(product_ids)
        cats = np.asarray(categories, dtype=np.int32)
        self.category = np.concatenate([self.category, cats])
        in_stock = np.array([s is None or s > 0 for s in stock], dtype=bool)
        self.in_stock = np.concatenate([self.in_stock, in_stock])
        prices = np.array([np.nan if p is None else p for p in price], dtype=np.float64)
        self.price = np.concatenate([self.price, prices])
        self.popularity = np.concatenate([self.popularity, np.zeros(m, dtype=np.float32)])
        self.source = np.concatenate([self.source, np.full(m, source, dtype=np.int8)])
        self.introduced_ms = np.concatenate(
            [self.introduced_ms, np.asarray(introduced_ms, dtype=np.int64)]
        )
        self.attributes.grow(start + m)
        self.live_vectors = np.ascontiguousarray(
            np.vstack([self.live_vectors, vectors.astype(np.float32)])
        )
        self.live_category = np.concatenate([self.live_category, cats])
        self.titles.extend(titles)
        self.product_ids.extend(product_ids)
        for offset, pid in enumerate(product_ids):  # last: the products become visible
            self.product_index[pid] = start + offset
        self.described += 1
        return list(range(start, start + m))

    def live_scores(
        self, query: np.ndarray, codes: list[int] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(indexes, inner products with ``query``) of live products (of ``codes``)."""
        idx = self.live_in(codes)  # first: live_vectors is replaced before live_category
        if not len(idx):
            return idx, np.zeros(0, dtype=np.float32)
        scores: np.ndarray = self.live_vectors[idx - self.n_trained] @ query
        return idx, scores

    def recategorize_live(self, idx: int, code: int, vector: np.ndarray) -> None:
        """A live product's new category and vector (trained products keep theirs)."""
        self.category[idx] = code
        self.live_category[idx - self.n_trained] = code
        self.live_vectors[idx - self.n_trained] = vector
        self.described += 1

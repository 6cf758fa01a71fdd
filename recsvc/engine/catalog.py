"""The served catalog: every per-product array a request reads, built once per bundle.

Item vectors are kept grouped by category, so a category filter scores a contiguous slice
(copying a 19k-row selection cost 2.4 ms of a 3.4 ms call at 1M products); ``position``
maps a product index to its row there. Stock and price are writable: catalog changes from
the feature store apply in place.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import polars as pl

from formats.types import Filter, ProductChange


class Catalog:
    def __init__(
        self,
        products: pl.DataFrame,
        item_factors: np.ndarray,
        repeat_categories: frozenset[str] = frozenset(),
    ) -> None:
        self.product_ids: list[str] = products["product_id"].to_list()
        self.product_index = {pid: i for i, pid in enumerate(self.product_ids)}
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
        self.change_seq = 0  # catalog changes (stock, price) applied up to this sequence

    @property
    def n_items(self) -> int:
        return len(self.product_ids)

    def vectors(self, idx: np.ndarray | int) -> np.ndarray:
        """Item vectors by product index."""
        result: np.ndarray = self.grouped_factors[self.position[idx]]
        return result

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
            ok &= ~np.isin(idx, np.fromiter(excluded, dtype=np.int64, count=len(excluded)))
        safe = np.maximum(idx, 0)
        cats = self.category[safe]
        if filter.include_categories:
            ok &= np.isin(cats, self.codes(filter.include_categories))
        if filter.exclude_categories:
            ok &= ~np.isin(cats, self.codes(filter.exclude_categories))
        if filter.in_stock_only:
            ok &= self.in_stock[safe]
        if filter.min_price is not None or filter.max_price is not None:
            price = self.price[safe]
            with np.errstate(invalid="ignore"):  # unknown prices (NaN) never match a bound
                if filter.min_price is not None:
                    ok &= price >= filter.min_price
                if filter.max_price is not None:
                    ok &= price <= filter.max_price
        return ok

    def apply_changes(self, seq: int, changes: list[ProductChange]) -> None:
        """Stock and price changes from the feature store, in place (the caller serializes)."""
        for change in changes:
            idx = self.product_index.get(change.product_id)
            if idx is None:
                continue
            if change.stock is not None:
                self.in_stock[idx] = change.stock > 0
            if change.price is not None:
                self.price[idx] = change.price
        self.change_seq = max(self.change_seq, seq)

"""Catalog changes from the feature store applied to a served catalog: stock and price, and
products created or described live (``UpdateProducts`` with a category, title or attributes).

A product the model does not know becomes a live product with a vector from the bundle's
content model (``formats.content``), the same vector training would give it; a bundle without
a content model gives it none (it is then served by popularity and filters only). A live
product's category, title and attributes may change later (its vector is recomputed); a
trained product's category stays the model's until the next training run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from formats.content import ContentModel
from formats.types import ProductChange
from recsvc.engine.catalog import FROM_CONTENT, NO_VECTOR, Catalog


def content_vectors(
    catalog: Catalog, content: ContentModel | None, products: Sequence[ProductChange]
) -> np.ndarray:
    """Vectors of live products from their definitions (zeros without a content model)."""
    if content is None or not products:
        return np.zeros((len(products), catalog.live_vectors.shape[1]), dtype=np.float32)
    import polars as pl

    names = [c.name for c in content.spec.columns]
    rows: dict[str, list[str | None]] = {
        "title": [p.title or "" for p in products],
        "category": [p.category or "uncategorized" for p in products],
    }
    for name in names:
        rows[name] = [p.attributes.get(name) or None for p in products]
    frame = pl.DataFrame(rows, schema=dict.fromkeys(rows, pl.Utf8))
    return content.predict(frame)


def apply_changes(
    catalog: Catalog, content: ContentModel | None, seq: int, changes: Sequence[ProductChange]
) -> int:
    """Apply ``changes`` (current state of each changed product) in place; returns how many
    products were created. The caller serializes calls."""
    new: list[ProductChange] = []
    redo: list[tuple[int, ProductChange]] = []
    for change in changes:
        idx = catalog.product_index.get(change.product_id)
        if idx is None:
            if change.category is not None:
                new.append(change)
            continue  # stock or price of a product this model does not have
        catalog.set_stock_price(idx, change.stock, change.price)
        if change.title is not None:
            catalog.titles[idx] = change.title
        if change.attributes:
            catalog.attributes.set(idx, change.attributes)
            catalog.described += 1
        if idx >= catalog.n_trained and change.describes:
            redo.append((idx, change))
    for (idx, change), vector in zip(
        redo, content_vectors(catalog, content, [c for _, c in redo]), strict=True
    ):
        code = catalog.category_code_of(change.category or catalog.category_of(idx))
        catalog.recategorize_live(idx, code, vector)
    if new:
        _create(catalog, content, new)
    catalog.change_seq = max(catalog.change_seq, seq)
    return len(new)


def _create(catalog: Catalog, content: ContentModel | None, new: list[ProductChange]) -> None:
    vectors = content_vectors(catalog, content, new)
    codes = [catalog.category_code_of(c.category or "uncategorized") for c in new]
    start = catalog.n_items
    # Attributes, stock and price first: the product becomes visible last, complete.
    catalog.attributes.grow(start + len(new))
    for offset, change in enumerate(new):
        if change.attributes:
            catalog.attributes.set(start + offset, change.attributes)
    catalog.add_products(
        [c.product_id for c in new],
        [c.title or "" for c in new],
        codes,
        vectors,
        FROM_CONTENT if content is not None else NO_VECTOR,
        [c.created_ms for c in new],
        stock=[c.stock for c in new],
        price=[c.price for c in new],
    )

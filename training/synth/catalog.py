"""The catalog: categories, brands, prices, titles, popularity and latent product vectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import polars as pl

from training.synth.arrays import F32, F64, I64, B
from training.synth.config import CATALOG_SCHEMA, SynthConfig
from training.synth.vocabulary import BRAND_HEADS, BRAND_TAILS, category_defs

DIM: Final = 16  # latent taste dimensions (of products, personas and customers)
_BRANDS_PER_CATEGORY: Final = 12


def _n_categories(config: SynthConfig) -> int:
    k = config.categories or min(max(config.products // 50, 5), 200)
    return min(k, config.products)


@dataclass(frozen=True)
class Catalog:
    category: I64  # per product
    price: F64
    in_stock: B
    brand: I64  # index into brand_names
    title_parts: tuple[pl.Series, pl.Series, pl.Series]  # adjective, noun, size per product
    vectors: F32  # (n_products, DIM) latent product vectors
    # Products grouped by category (stable order): ``by_cat[cat_start[c]:cat_start[c + 1]]``.
    by_cat: I64
    cat_start: I64
    log_pop_sorted: F32  # log within-category popularity, in by_cat order
    pop_cdf_sorted: F64  # category index + within-category popularity CDF, in by_cat order
    cat_pop: F64  # share of traffic per category
    cat_names: tuple[str, ...]
    cat_consumable: B
    cat_cycle_days: F64
    brand_names: tuple[str, ...]

    @property
    def n_categories(self) -> int:
        return len(self.cat_names)

    def frame(self, product_ids: pl.Series) -> pl.DataFrame:
        adj, noun, size = self.title_parts
        number = pl.int_range(1, len(product_ids) + 1, eager=True).cast(pl.Utf8)
        title = pl.select(
            pl.concat_str([adj, noun, size], separator=" ") + pl.lit(" #") + number
        ).to_series()
        return pl.DataFrame(
            {
                "product_id": product_ids,
                "title": title,
                "category": pl.Series(self.cat_names, dtype=pl.Utf8).gather(self.category),
                "price": self.price,
                "in_stock": self.in_stock,
                "brand": pl.Series(self.brand_names, dtype=pl.Utf8).gather(self.brand),
                "consumable": self.cat_consumable[self.category],
            },
            schema=CATALOG_SCHEMA,
        )


def make_catalog(config: SynthConfig, rng: np.random.Generator) -> Catalog:
    m = config.products
    defs = category_defs(_n_categories(config))
    k = len(defs)

    # Category sizes vary (some aisles are much deeper); every category gets >= 1 product.
    size_w = rng.lognormal(0.0, 0.6, k)
    counts = 1 + rng.multinomial(m - k, size_w / size_w.sum())
    category = rng.permutation(np.repeat(np.arange(k, dtype=np.int64), counts))
    by_cat = np.argsort(category, kind="stable").astype(np.int64)
    cat_start = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)

    # Prices: log-normal around a category median, shifted by a per-brand premium.
    brand_pool = [h + t for h in BRAND_HEADS for t in BRAND_TAILS]
    brand_order = rng.permuted(
        np.tile(np.arange(len(brand_pool)), (k, 1)), axis=1
    )  # distinct brands per category, brands shared across categories
    cat_brands = brand_order[:, :_BRANDS_PER_CATEGORY]
    n_brands = np.clip(counts // 8, 2, _BRANDS_PER_CATEGORY)
    # Squared uniform skews products toward each category's first (leading) brands.
    slot = np.minimum(
        (rng.random(m) ** 2 * n_brands[category]).astype(np.int64), n_brands[category] - 1
    )
    brand = cat_brands[category, slot].astype(np.int64)
    brand_premium = rng.lognormal(0.0, 0.25, len(brand_pool))

    median = np.array([c.price * mult for c, _, mult in defs])
    raw = median[category] * brand_premium[brand] * rng.lognormal(0.0, 0.45, m)
    # Shelf prices: x.99 above 5, cents below; never below 0.29.
    price = np.where(raw >= 5.0, np.floor(raw) + 0.99, np.round(raw, 2))
    price = np.maximum(price, 0.29)

    # Zipf-like popularity: random rank within the category, cheaper items slightly favoured.
    rank = np.empty(m, dtype=np.int64)
    key_order = np.lexsort((rng.random(m), category))
    rank[key_order] = np.arange(m) - np.repeat(cat_start[:-1], counts)
    exponent = rng.uniform(0.85, 1.15, k)[category]
    log_pop = -exponent * np.log1p(rank) - 0.3 * np.log(price / median[category])
    log_pop_sorted = log_pop[by_cat]
    # Normalise within each category (segment-wise) for the popularity CDF used by exploration.
    seg_max = np.maximum.reduceat(log_pop_sorted, cat_start[:-1])
    w = np.exp(log_pop_sorted - np.repeat(seg_max, counts))
    cum = np.cumsum(w)
    seg_base = np.repeat(np.concatenate(([0.0], cum[cat_start[1:-1] - 1])), counts)
    seg_total = np.repeat(cum[cat_start[1:] - 1], counts) - seg_base
    within = (cum - seg_base) / seg_total
    within[cat_start[1:] - 1] = 1.0
    pop_cdf_sorted = np.repeat(np.arange(k, dtype=np.float64), counts) + within

    # Category traffic is Zipf-like too; consumables are bought more often.
    cat_rank = rng.permutation(k)
    consumable = np.array([c.consumable for c, _, _ in defs])
    cat_pop = np.asarray((1.0 + cat_rank) ** -0.8 * np.where(consumable, 1.5, 1.0), np.float64)
    cat_pop /= cat_pop.sum()

    # Title words: one flat vocabulary per part, offsets per category (modifier capitalised).
    parts: list[pl.Series] = []
    for field in ("adjectives", "nouns", "sizes"):
        vocab: list[str] = []
        offset = np.zeros(k, dtype=np.int64)
        length = np.zeros(k, dtype=np.int64)
        for i, (c, mod, _) in enumerate(defs):
            words = getattr(c, field)
            if field == "adjectives" and mod:
                words = tuple(f"{mod.capitalize()} {w}" for w in words)
            offset[i], length[i] = len(vocab), len(words)
            vocab.extend(words)
        pick = offset[category] + (rng.random(m) * length[category]).astype(np.int64)
        parts.append(pl.Series(vocab, dtype=pl.Utf8).gather(pick))

    return Catalog(
        category=category,
        price=price,
        in_stock=rng.random(m) < 0.92,
        brand=brand,
        title_parts=(parts[0], parts[1], parts[2]),
        vectors=rng.standard_normal((m, DIM), dtype=np.float32),
        by_cat=by_cat,
        cat_start=cat_start,
        log_pop_sorted=log_pop_sorted.astype(np.float32),
        pop_cdf_sorted=pop_cdf_sorted,
        cat_pop=cat_pop,
        cat_names=tuple(c.name for c, _, _ in defs),
        cat_consumable=consumable,
        cat_cycle_days=np.array([c.cycle_days for c, _, _ in defs]),
        brand_names=tuple(brand_pool),
    )

"""`generate`: the world for a config, customers simulated chunk by chunk."""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import polars as pl
from tqdm import tqdm

from formats.events import INTERACTION_TYPES
from training.synth.catalog import make_catalog
from training.synth.config import INTERACTIONS_SCHEMA, SynthConfig, World, validate
from training.synth.customers import make_customers
from training.synth.personas import make_personas
from training.synth.season import Season
from training.synth.simulate import chunk_events

# Part of the determinism contract: changing it changes every generated world.
_CHUNK_CUSTOMERS: Final = 50_000


def generate(config: SynthConfig, progress: bool = False) -> World:
    """Generate the world for ``config``; the same config always gives identical frames."""
    validate(config)
    root = np.random.SeedSequence(config.seed)
    s_catalog, s_customers, s_personas, s_chunks, s_loyalty = root.spawn(5)

    catalog = make_catalog(config, np.random.default_rng(s_catalog))
    people = make_customers(config, np.random.default_rng(s_customers))
    personas = make_personas(catalog, np.random.default_rng(s_personas))
    season = Season.build(config)

    product_ids = _ids("P", config.products, 6)
    customer_ids = _ids("C", config.customers, 7)
    event_names = pl.Series(INTERACTION_TYPES, dtype=pl.Utf8)
    spend = np.zeros(config.customers, dtype=np.float64)
    frames: list[pl.DataFrame] = []
    n_chunks = math.ceil(config.customers / _CHUNK_CUSTOMERS)
    chunk_seeds = s_chunks.spawn(n_chunks)
    with tqdm(total=config.customers, unit="customers", desc="synth", disable=not progress) as bar:
        for index, chunk_seed in enumerate(chunk_seeds):
            lo = index * _CHUNK_CUSTOMERS
            hi = min(lo + _CHUNK_CUSTOMERS, config.customers)
            ev = chunk_events(
                lo, hi, people, catalog, personas, season, np.random.default_rng(chunk_seed)
            )
            spend[lo:hi] = np.bincount(
                ev.customer - lo, weights=np.nan_to_num(ev.amount), minlength=hi - lo
            )
            frames.append(
                pl.DataFrame(
                    {
                        "customer_id": customer_ids.gather(ev.customer),
                        "product_id": product_ids.gather(ev.product),
                        "timestamp": pl.Series(ev.ts).cast(pl.Datetime("us", "UTC")),
                        "event_type": event_names.gather(ev.event),
                        "quantity": pl.Series(ev.quantity, dtype=pl.Int32),
                        "amount": pl.Series(ev.amount, dtype=pl.Float64, nan_to_null=True),
                    }
                )
            )
            bar.update(hi - lo)
    interactions = (
        pl.concat(frames, rechunk=False) if frames else pl.DataFrame(schema=INTERACTIONS_SCHEMA)
    )
    return World(
        interactions=interactions,
        catalog=catalog.frame(product_ids),
        customers=people.frame(customer_ids, spend, np.random.default_rng(s_loyalty)),
    )


def _ids(prefix: str, n: int, width: int) -> pl.Series:
    """Ids like C0000001, numbered from 1; the zero-padding widens only if n needs it."""
    width = max(width, len(str(n)))
    return pl.select(
        pl.concat_str(pl.lit(prefix), pl.int_range(1, n + 1).cast(pl.Utf8).str.zfill(width))
    ).to_series()

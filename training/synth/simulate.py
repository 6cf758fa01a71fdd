"""Interactions of one chunk of customers: taste, preferred categories, product choice, the
online funnel, store purchases, re-purchases and their times."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from formats.events import INTERACTION_TYPES
from training.synth.arrays import F32, F64, I32, I64, normalized_cdf
from training.synth.catalog import DIM, Catalog
from training.synth.customers import Customers
from training.synth.personas import Personas
from training.synth.season import Season

# Event codes index INTERACTION_TYPES = (purchase, add_to_cart, click, view).
_PURCHASE, _CART, _CLICK, _VIEW = (
    INTERACTION_TYPES.index(e) for e in ("purchase", "add_to_cart", "click", "view")
)

# Cells (pairs x products) per softmax block; bounds memory of the choice step (~100 MB).
_BLOCK_CELLS: Final = 4_000_000
_MAX_SLOTS: Final = 6  # most preferred categories per customer

# Behavioural knobs, tuned (with those of customers.py) so that the event mix is ~50/25/12/13 %
# (view/click/cart/purchase) and ALS clearly beats popularity on a temporal hold-out of purchases.
_TASTE_STRENGTH: Final = 2.0  # scale of taste . product inside the softmax
_EXPLORE: Final = 0.10  # chains that ignore taste and follow popularity in any category
_STORE: Final = 0.04  # chains that are a direct (in-store) purchase, no online funnel
_REPEAT_P: Final = 0.6  # geometric "stop" probability for consumable re-purchases
# Funnel conversion = sigmoid(bias + slope * (affinity - centre)); the centre sits near the
# typical affinity of a chosen product, so conversions are ~50% on average.
_FUNNEL_CENTRE: Final = 2.6
_FUNNEL_SLOPE: Final = 0.8
_CLICK_BIAS: Final = 0.0
_CART_BIAS: Final = -0.8
_BUY_BIAS: Final = 0.0


@dataclass(frozen=True)
class Events:
    customer: I64  # global customer index
    product: I64
    ts: I64  # microseconds since epoch
    event: I64  # index into INTERACTION_TYPES
    quantity: I32
    amount: F64  # NaN for non-purchases


def chunk_events(
    lo: int,
    hi: int,
    people: Customers,
    cat: Catalog,
    personas: Personas,
    season: Season,
    rng: np.random.Generator,
) -> Events:
    n = hi - lo
    k = cat.n_categories
    budget = people.n_events[lo:hi]

    # Latent tastes: near the persona centre plus an individual component.
    persona = np.searchsorted(personas.cdf, rng.random(n), side="right")
    persona = np.minimum(persona, len(personas.cdf) - 1)
    taste = 0.75 * personas.centers[persona] + 0.66 * rng.standard_normal(
        (n, DIM), dtype=np.float32
    )
    taste *= np.float32(_TASTE_STRENGTH / math.sqrt(DIM))

    # Preferred categories: up to 6 draws from the persona's mix (more for active customers),
    # with random weights; duplicate draws simply merge into a stronger preference.
    n_slots = np.minimum(_MAX_SLOTS, 1 + rng.poisson(1.0 + 0.5 * np.log1p(budget)))
    q = persona[:, None] + rng.random((n, _MAX_SLOTS))
    slot_cat = np.searchsorted(personas.cat_cdf_flat, q, side="right") - persona[:, None] * k
    slot_cat = np.clip(slot_cat, 0, k - 1)
    slot_w = rng.gamma(1.0, 1.0, (n, _MAX_SLOTS)) * (np.arange(_MAX_SLOTS) < n_slots[:, None])
    slot_cdf = np.cumsum(slot_w, axis=1)
    slot_cdf /= slot_cdf[:, -1:]

    # A chain is one product interest: a funnel (view, click, cart, purchase) or a store
    # purchase, plus re-purchases. Each yields >= 1 event, and we draw more chains than the
    # budget needs, then keep each customer's first `budget` events (in chain order).
    n_chains = np.where(budget > 0, np.ceil(budget / 1.3).astype(np.int64) + 1, 0)
    owner = np.repeat(np.arange(n, dtype=np.int64), n_chains)
    c = len(owner)
    explore = rng.random(c) < _EXPLORE
    slot = (rng.random(c)[:, None] > slot_cdf[owner]).sum(axis=1)
    chain_cat = np.where(
        explore,
        np.minimum(
            np.searchsorted(normalized_cdf(cat.cat_pop), rng.random(c), side="right"), k - 1
        ),
        slot_cat[owner, np.minimum(slot, _MAX_SLOTS - 1)],
    )
    u_pick = rng.random(c)
    product = np.empty(c, dtype=np.int64)
    affinity = np.empty(c, dtype=np.float32)

    # Exploration follows within-category popularity only.
    ex = np.flatnonzero(explore)
    pos = np.searchsorted(cat.pop_cdf_sorted, chain_cat[ex] + u_pick[ex], side="right")
    pos = np.clip(pos, cat.cat_start[chain_cat[ex]], cat.cat_start[chain_cat[ex] + 1] - 1)
    product[ex] = cat.by_cat[pos]
    affinity[ex] = np.einsum("ij,ij->i", taste[owner[ex]], cat.vectors[product[ex]])

    # Taste-driven choice: softmax(taste . product + log popularity) over the category.
    _choose(np.flatnonzero(~explore), owner, chain_cat, u_pick, taste, cat, product, affinity)

    # Funnel: conversion rises with affinity (logistic), so purchases reveal taste best.
    store = rng.random(c) < _STORE
    z = np.float32(_FUNNEL_SLOPE) * (affinity - np.float32(_FUNNEL_CENTRE))
    click = rng.random(c) < _sigmoid(_CLICK_BIAS + z)
    cart = click & (rng.random(c) < _sigmoid(_CART_BIAS + z))
    buy = cart & (rng.random(c) < _sigmoid(_BUY_BIAS + z))
    stages = 1 + click.astype(np.int64) + cart + buy
    bought = store | buy
    consumable = cat.cat_consumable[chain_cat]
    repeats = np.where(
        bought & consumable, np.minimum(rng.geometric(_REPEAT_P, c) - 1, 12), 0
    ).astype(np.int64)
    length = np.where(store, 1, stages) + repeats
    qty = np.where(
        consumable,
        1 + np.minimum(rng.poisson(0.45, c), 11),
        1 + (rng.random(c) < 0.05),
    ).astype(np.int32)

    # Expand chains to events.
    first = np.cumsum(length) - length
    ev_chain = np.repeat(np.arange(c, dtype=np.int64), length)
    step = np.arange(len(ev_chain), dtype=np.int64) - first[ev_chain]
    online = ~store[ev_chain]
    # Funnel steps map view(0)->click(1)->cart(2)->purchase(3); later steps are re-purchases.
    event = np.where(online, _event_code(step), _PURCHASE)
    repeat_step = np.where(online, step >= 4, step >= 1)
    event = np.where(repeat_step, _PURCHASE, event)

    # Times: funnel steps seconds to minutes apart (some carts are bought a day or two later),
    # re-purchases a jittered replenishment cycle apart.
    start = season.sample(people.active_from[lo:hi][owner], people.active_to[lo:hi][owner], rng)
    e = len(ev_chain)
    gap_s = np.select(
        [step == 1, step == 2, step == 3],
        [
            rng.exponential(45.0, e),
            rng.exponential(150.0, e),
            np.where(
                rng.random(e) < 0.85, rng.exponential(480.0, e), rng.exponential(129_600.0, e)
            ),
        ],
        default=0.0,
    )
    cycle_s = cat.cat_cycle_days[chain_cat[ev_chain]] * 86_400.0 * rng.lognormal(0.0, 0.3, e)
    gap = np.where(repeat_step, np.maximum(cycle_s, 3 * 86_400.0), gap_s)
    gap_us = (gap * 1e6).astype(np.int64)
    ts = np.empty(e, dtype=np.int64)
    ts[first] = start
    for s in range(1, int(length.max(initial=1))):  # <= 16 steps: loop over steps, not rows
        idx = first[length > s] + s
        ts[idx] = ts[idx - 1] + gap_us[idx]

    # Keep events inside the period, then each customer's first `budget` of them.
    keep = ts < season.end_us
    ev_owner = owner[ev_chain]
    kept_owner = ev_owner[keep]
    rank = np.arange(len(kept_owner)) - np.searchsorted(kept_owner, kept_owner, side="left")
    sel = np.flatnonzero(keep)[rank < budget[kept_owner]]

    cust = ev_owner[sel]
    order = np.lexsort((ts[sel], cust))
    sel = sel[order]
    chain = ev_chain[sel]
    prod = product[chain]
    ev_code = event[sel]
    quantity = np.where((ev_code == _PURCHASE) | (ev_code == _CART), qty[chain], 1).astype(np.int32)
    amount = np.where(ev_code == _PURCHASE, np.round(cat.price[prod] * quantity, 2), np.nan).astype(
        np.float64
    )
    return Events(
        customer=(cust[order] + lo).astype(np.int64),
        product=prod.astype(np.int64),
        ts=ts[sel],
        event=ev_code.astype(np.int64),
        quantity=quantity,
        amount=amount,
    )


def _event_code(step: I64) -> I64:
    codes = np.array([_VIEW, _CLICK, _CART, _PURCHASE], dtype=np.int64)
    return np.asarray(codes[np.minimum(step, 3)], dtype=np.int64)


def _sigmoid(x: F32) -> F32:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float32)


def _choose(
    chains: I64,
    owner: I64,
    chain_cat: I64,
    u_pick: F64,
    taste: F32,
    cat: Catalog,
    product: I64,
    affinity: F32,
) -> None:
    """Sample ``product`` (and record ``affinity``) for the given chains by inverse CDF.

    Each (customer, category) pair's softmax is computed once, in category blocks of at most
    _BLOCK_CELLS cells; the CDF rows are offset by their row number so that one flat
    searchsorted serves every chain of the block.
    """
    if len(chains) == 0:
        return
    k = cat.n_categories
    key = owner[chains] * k + chain_cat[chains]
    pairs, pair_of_chain = np.unique(key, return_inverse=True)
    pair_cat = pairs % k
    pair_owner = pairs // k
    pair_order = np.argsort(pair_cat, kind="stable")
    pair_pos = np.empty(len(pairs), dtype=np.int64)
    pair_pos[pair_order] = np.arange(len(pairs))  # position in category-grouped order
    chain_pos = pair_pos[pair_of_chain]
    chain_order = np.argsort(chain_pos, kind="stable")
    sorted_pos = chain_pos[chain_order]
    cat_bounds = np.searchsorted(pair_cat[pair_order], np.arange(k + 1))

    for c in range(k):  # loop over categories and blocks, each fully vectorized
        p_lo, p_hi = int(cat_bounds[c]), int(cat_bounds[c + 1])
        if p_lo == p_hi:
            continue
        s, t = int(cat.cat_start[c]), int(cat.cat_start[c + 1])
        vecs = cat.vectors[cat.by_cat[s:t]]
        log_pop = cat.log_pop_sorted[s:t]
        rows_per_block = max(1, _BLOCK_CELLS // (t - s))
        for b_lo in range(p_lo, p_hi, rows_per_block):
            b_hi = min(b_lo + rows_per_block, p_hi)
            users = taste[pair_owner[pair_order[b_lo:b_hi]]]
            logits = users @ vecs.T
            logits += log_pop
            logits -= logits.max(axis=1, keepdims=True)
            np.exp(logits, out=logits)
            cdf = np.cumsum(logits, axis=1, dtype=np.float64)
            cdf /= cdf[:, -1:]
            cdf += np.arange(b_hi - b_lo, dtype=np.float64)[:, None]
            c_lo, c_hi = np.searchsorted(sorted_pos, [b_lo, b_hi])
            these = chain_order[c_lo:c_hi]
            row = sorted_pos[c_lo:c_hi] - b_lo
            hit = np.searchsorted(cdf.ravel(), row + u_pick[chains[these]], side="right")
            col = np.clip(hit - row * (t - s), 0, t - s - 1)
            idx = chains[these]
            product[idx] = cat.by_cat[s + col]
            affinity[idx] = np.einsum("ij,ij->i", users[row], vecs[col])

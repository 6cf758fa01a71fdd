"""Catalog changes (UpdateProducts): stock, price and product definitions in Redis, and the
change sequence every serving worker follows to apply them (docs/feature-store.md).

One Lua script records a call's changes atomically (all keys share ``{catalog}``); serving
workers compare ``{catalog}:seq`` on every request and fetch the products changed since with
one script call. A definition (title, category, attributes) is what makes a product the model
does not know servable: it is kept until overwritten, so a restarted worker, or one that
loads a new model, re-applies it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from feature_store.store import FeatureStore, as_text
from formats.types import ProductChange

# KEYS: stock, price, changes, seq, products. ARGV[1]: now (ms), then per product
# (product_id, stock or "", price or "", definition JSON or "") quads. A definition is merged
# into the stored one: title and category replace, attributes merge ("" removes one).
_UPDATE_PRODUCTS = """
local seq = redis.call('INCR', KEYS[4])
for i = 2, #ARGV, 4 do
  local id = ARGV[i]
  if ARGV[i + 1] ~= '' then redis.call('HSET', KEYS[1], id, ARGV[i + 1]) end
  if ARGV[i + 2] ~= '' then redis.call('HSET', KEYS[2], id, ARGV[i + 2]) end
  if ARGV[i + 3] ~= '' then
    local new = cjson.decode(ARGV[i + 3])
    local raw = redis.call('HGET', KEYS[5], id)
    local def = raw and cjson.decode(raw) or {created_ms = tonumber(ARGV[1])}
    if type(def.attributes) ~= 'table' then def.attributes = {} end
    if new.title then def.title = new.title end
    if new.category then def.category = new.category end
    for k, v in pairs(new.attributes or {}) do
      if v == '' then def.attributes[k] = nil else def.attributes[k] = v end
    end
    if next(def.attributes) == nil then def.attributes = nil end
    redis.call('HSET', KEYS[5], id, cjson.encode(def))
  end
  redis.call('ZADD', KEYS[3], seq, id)
end
return seq
"""

# KEYS: stock, price, changes, seq, products. ARGV[1]: last sequence seen. Returns
# {seq, product_id, stock, price, definition, ...} for products changed since (false = not set).
_CHANGES_SINCE = """
local seq = tonumber(redis.call('GET', KEYS[4]) or '0')
local out = {seq}
if seq <= tonumber(ARGV[1]) then return out end
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], '+inf')
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[1], id)
  out[#out + 1] = redis.call('HGET', KEYS[2], id)
  out[#out + 1] = redis.call('HGET', KEYS[5], id)
end
return out
"""


def _keys(store: FeatureStore) -> list[str]:
    k = store.keys
    return [k.stock, k.price, k.changes, k.change_seq, k.products]


def update_products(store: FeatureStore, changes: Sequence[ProductChange], now_ms: int = 0) -> int:
    """Record stock, price and product definitions atomically; returns the new change
    sequence. ``now_ms`` stamps products described for the first time (created_ms)."""
    args: list[str | int] = [now_ms or int(time.time() * 1000)]
    for c in changes:
        definition = ""
        if c.describes:
            fields: dict[str, Any] = {"attributes": c.attributes}
            if c.title is not None:
                fields["title"] = c.title
            if c.category is not None:
                fields["category"] = c.category
            definition = json.dumps(fields)
        args += [
            c.product_id,
            "" if c.stock is None else str(c.stock),
            "" if c.price is None else repr(c.price),
            definition,
        ]
    return int(store.script(_UPDATE_PRODUCTS)(keys=_keys(store), args=args))


def changes_since(store: FeatureStore, seq: int) -> tuple[int, list[ProductChange]]:
    """Products changed after sequence ``seq``: current stock, price and definition."""
    script = store.reader_script(_CHANGES_SINCE)
    raw = script(keys=_keys(store), args=[seq])
    changes = [
        product_change(
            as_text(raw[i]),
            None if raw[i + 1] is None else as_text(raw[i + 1]),
            None if raw[i + 2] is None else as_text(raw[i + 2]),
            None if raw[i + 3] is None else as_text(raw[i + 3]),
        )
        for i in range(1, len(raw), 4)
    ]
    return int(raw[0]), changes


def described_products(store: FeatureStore) -> dict[str, ProductChange]:
    """Every product described through UpdateProducts, with its stock and price, by id."""
    k = store.keys
    pipe = store.reader.pipeline(transaction=False)
    pipe.hgetall(k.products)
    pipe.hgetall(k.stock)
    pipe.hgetall(k.price)
    definitions, stock, price = pipe.execute()
    stocks = {as_text(a): as_text(b) for a, b in stock.items()}
    prices = {as_text(a): as_text(b) for a, b in price.items()}
    found = {}
    for raw_id, raw in definitions.items():
        pid = as_text(raw_id)
        found[pid] = product_change(pid, stocks.get(pid), prices.get(pid), as_text(raw))
    return dict(sorted(found.items()))


def described_count(store: FeatureStore) -> int:
    return int(store.reader.hlen(store.keys.products))


def product_change(
    product_id: str, stock: str | None, price: str | None, definition: str | None
) -> ProductChange:
    """A product's stored state (stock, price, definition JSON) as a ProductChange."""
    d: dict[str, Any] = json.loads(definition) if definition else {}
    attributes = d.get("attributes")
    return ProductChange(
        product_id,
        None if stock is None else int(stock),
        None if price is None else float(price),
        d.get("title"),
        d.get("category"),
        {str(a): str(v) for a, v in attributes.items()} if isinstance(attributes, dict) else {},
        int(d.get("created_ms") or 0),
    )

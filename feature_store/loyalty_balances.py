"""Loyalty balances in Redis: SetLoyalty's tier and points over the loaded profile.

One Lua script reads and writes a customer's loyalty hash and loaded profile (same hash tag),
so concurrent changes to a balance never lose one. Keys are described in docs/feature-store.md.
"""

from __future__ import annotations

from feature_store.store import FeatureStore, as_text

# KEYS[1] loyalty hash, KEYS[2] loaded profile (same hash tag). ARGV: tier or "", points or "",
# delta or "", the live generation. Values set under an older generation give way to the
# loaded profile (a load with a customers file brings newer tiers and balances).
# Returns {tier, points} after the change; the balance never goes below zero.
_SET_LOYALTY = """
local tier, points = redis.call('HGET', KEYS[1], 'tier'), redis.call('HGET', KEYS[1], 'points')
local raw = redis.call('GET', KEYS[2])
local profile = raw and cjson.decode(raw) or {}
local set_gen = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0')
if set_gen < tonumber(ARGV[4]) then tier, points = false, false end
if not tier or not points then
  if not tier and type(profile['tier']) == 'string' then tier = profile['tier'] end
  if not points and type(profile['points']) == 'number' then points = profile['points'] end
end
if ARGV[1] ~= '' then tier = ARGV[1] end
points = tonumber(points or 0)
if ARGV[2] ~= '' then points = tonumber(ARGV[2]) end
if ARGV[3] ~= '' then points = math.max(0, points + tonumber(ARGV[3])) end
if tier then redis.call('HSET', KEYS[1], 'tier', tier) end
redis.call('HSET', KEYS[1], 'points', tostring(points), 'generation', ARGV[4])
return {tier or '', tostring(points)}
"""


def set_loyalty(
    store: FeatureStore,
    customer_id: str,
    tier: str | None = None,
    points: float | None = None,
    delta: float | None = None,
) -> tuple[str, float]:
    """Set tier and/or points (or add ``delta``); returns the tier and balance after."""
    gen = store.live_generation() or 0
    script = store.script(_SET_LOYALTY)
    keys = [store.keys.loyalty(customer_id), store.keys.profile(gen, customer_id)]
    args = ["" if v is None else str(v) for v in (tier, points, delta)]
    args.append(str(gen))
    new_tier, new_points = script(keys=keys, args=args)
    return as_text(new_tier), float(as_text(new_points))

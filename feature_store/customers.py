"""Loyalty balances, offer usage and caps, and data-protection requests, in Redis.

Caps are enforced by Lua scripts over the keys of one offer (``{o:<offer_id>}``), so
concurrent redemptions against a cap of one let exactly one through, on one Redis or a
cluster. Keys are described in docs/feature-store.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from feature_store.keys import OFFER_DAY_TTL
from feature_store.store import FeatureStore, as_text
from formats.events import decode

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

# KEYS[1] offer usage hash. ARGV: customer, event_id, cost, per-customer cap (0 = none),
# budget (0 = none). Idempotent per event_id (a retried call is not counted twice).
# Returns "" when granted, else the reason.
_REDEEM = """
if redis.call('HEXISTS', KEYS[1], 'e:' .. ARGV[2]) == 1 then return '' end
local mine = tonumber(redis.call('HGET', KEYS[1], 'c:' .. ARGV[1]) or '0')
local cap = tonumber(ARGV[4])
if cap > 0 and mine >= cap then return 'redemption limit of this offer reached for the customer' end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local budget, cost = tonumber(ARGV[5]), tonumber(ARGV[3])
if budget > 0 and spent + cost > budget then return 'the budget of this offer is spent' end
redis.call('HINCRBY', KEYS[1], 'c:' .. ARGV[1], 1)
redis.call('HINCRBYFLOAT', KEYS[1], 'spent', cost)
redis.call('HSET', KEYS[1], 'e:' .. ARGV[2], '1')
return ''
"""


OFFER_EVENT_KINDS = ("impression", "click", "redemption")


@dataclass(frozen=True, kw_only=True)  # keywords: three counts in a row are easy to swap
class OfferUsage:
    """This customer's use of one offer, and the offer's spend."""

    redemptions: int = 0  # by this customer, ever
    impressions_today: int = 0  # shown to this customer today (UTC)
    spent: float = 0.0  # total cost of all customers' redemptions so far


@dataclass(frozen=True, kw_only=True)
class OfferStats:
    """What has been observed of one offer (offer_impression/click/redeemed events)."""

    impressions: int = 0
    clicks: int = 0  # carried for reports; the bandit models redemption per impression
    redemptions: int = 0
    by_segment: Mapping[str, OfferStats] = field(default_factory=dict)


def today(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d")


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


def redeem(
    store: FeatureStore,
    offer_id: str,
    customer_id: str,
    event_id: str,
    cost: float,
    max_per_customer: int = 0,
    budget: float = 0.0,
) -> str | None:
    """Count a redemption if caps allow; None when granted, else why not."""
    script = store.script(_REDEEM)
    reason = script(
        keys=[store.keys.offer_usage(offer_id)],
        args=[customer_id, event_id, cost, max_per_customer, budget],
    )
    if not reason:  # remembered for forget/export, whatever the catalog holds by then
        store.writer.sadd(store.keys.offers_used, offer_id)
    return as_text(reason) or None


def record_offer_events(store: FeatureStore, events: list[tuple[str, str, str, int]]) -> None:
    """Impression counters per customer and day, and the bandit's counts per offer and per
    offer and segment (the customer's loaded segment, when they have one).

    ``events``: (customer_id, offer_id, kind, ts_ms), kind one of impression, click,
    redemption.
    """
    if not events:
        return
    k = store.keys
    segments = store.segments({customer for customer, *_ in events})
    pipe = store.writer.pipeline(transaction=False)
    day = today()  # the frequency cap counts impressions by the day they are received
    for customer, offer, kind, _ in events:
        if kind == "impression":
            key = k.offer_impressions(customer, day)
            pipe.hincrby(key, offer, 1)
            pipe.expire(key, OFFER_DAY_TTL)
        pipe.hincrby(k.offer_stats, f"{offer}|{kind}", 1)
        if segment := segments.get(customer):
            pipe.hincrby(k.offer_stats, f"{offer}|{kind}|{segment}", 1)
    pipe.execute()


def offer_state(
    store: FeatureStore, customer_id: str, offer_ids: list[str], now: datetime | None = None
) -> tuple[dict[str, OfferUsage], dict[str, OfferStats]]:
    """Usage by this customer and observed counts, for every offer, in one round trip."""
    k = store.keys
    pipe = store.reader.pipeline(transaction=False)
    pipe.hgetall(k.offer_impressions(customer_id, today(now)))
    pipe.hgetall(k.offer_stats)
    for offer in offer_ids:
        pipe.hmget(k.offer_usage(offer), [f"c:{customer_id}", "spent"])
    shown, raw_stats, *usage = pipe.execute()
    shown = {as_text(a): int(b) for a, b in shown.items()}
    stats_counts = {as_text(a): int(b) for a, b in raw_stats.items()}
    usages = {
        offer: OfferUsage(
            redemptions=int(mine or 0),
            impressions_today=shown.get(offer, 0),
            spent=float(spent or 0.0),
        )
        for offer, (mine, spent) in zip(offer_ids, usage, strict=True)
    }
    by_segment: dict[str, dict[str, dict[str, int]]] = {}  # offer -> segment -> kind -> n
    for name, n in stats_counts.items():
        offer, _, rest = name.partition("|")
        kind, _, segment = rest.partition("|")
        if segment:
            by_segment.setdefault(offer, {}).setdefault(segment, {})[kind] = n

    def counts(c: dict[str, int], segments: dict[str, dict[str, int]]) -> OfferStats:
        return OfferStats(
            impressions=c.get("impression", 0),
            clicks=c.get("click", 0),
            redemptions=c.get("redemption", 0),
            by_segment={seg: counts(sc, {}) for seg, sc in segments.items()},
        )

    stats = {
        offer: counts(
            {kind: stats_counts.get(f"{offer}|{kind}", 0) for kind in OFFER_EVENT_KINDS},
            by_segment.get(offer, {}),
        )
        for offer in offer_ids
    }
    return usages, stats


# -- data protection ----------------------------------------------------------------------


def tombstones(store: FeatureStore) -> dict[str, int]:
    """Forgotten customers -> when (Unix ms)."""
    raw = store.writer.hgetall(store.keys.tombstones)
    return {as_text(a): int(b) for a, b in raw.items()}


def _customer_events(store: FeatureStore, customer_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(stream id, event) of the customer still in the stream: a full scan, in chunks."""
    found: list[tuple[str, dict[str, Any]]] = []
    start = "-"
    while True:
        chunk = store.writer.xrange(store.keys.stream, min=start, count=10_000)
        if not chunk:
            return found
        for sid, fields in chunk:
            event = decode(fields[b"e"])
            if event.customer_id == customer_id:
                found.append((as_text(sid), asdict(event)))
        start = "(" + as_text(chunk[-1][0])


def _customer_keys(store: FeatureStore, customer_id: str) -> list[str]:
    """Every key of the customer: real time, loyalty, loaded profile, offer impressions."""
    k = store.keys
    gen = store.live_generation()
    keys = [*k.customer_keys(customer_id), k.loyalty(customer_id)]
    if gen is not None:
        keys.append(k.profile(gen, customer_id))
    now = datetime.now(UTC)
    # Impression counters live OFFER_DAY_TTL (two days): today's, yesterday's, tomorrow's (UTC).
    for days in (-1, 0, 1):
        keys.append(k.offer_impressions(customer_id, today(now + timedelta(days=days))))
    return keys


def export_customer(store: FeatureStore, customer_id: str, offer_ids: list[str]) -> dict[str, Any]:
    """Everything held on the customer (right of access)."""
    activity = store.activity(customer_id)
    usages, _ = offer_state(store, customer_id, _offers_with_usage(store, offer_ids))
    return {
        "customer_id": customer_id,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": activity.profile,
        "loyalty": activity.loyalty,
        "activity": {
            "counters": activity.counters,
            "recent": [asdict(e) for e in activity.recent],
            "purchased": sorted(activity.purchased),
        },
        "offers": {o: asdict(u) for o, u in usages.items() if u.redemptions or u.impressions_today},
        "events": [{"stream_id": sid, **e} for sid, e in _customer_events(store, customer_id)],
        "forgotten_at": tombstones(store).get(customer_id),
    }


@dataclass(frozen=True)
class ForgetReport:
    keys_removed: int
    events_removed: int


def _offers_with_usage(store: FeatureStore, offer_ids: list[str]) -> list[str]:
    """The catalog's offers and every offer ever redeemed (retired ones included)."""
    used = {as_text(o) for o in store.writer.smembers(store.keys.offers_used)}
    return sorted(used | set(offer_ids))


def forget(store: FeatureStore, customer_id: str, offer_ids: list[str]) -> ForgetReport:
    """Delete every key of the customer, their stream entries and dedupe keys, their offer
    usage, and tombstone them (first, so an export running meanwhile already skips them)."""
    k = store.keys
    w = store.writer
    w.hset(k.tombstones, customer_id, int(datetime.now(UTC).timestamp() * 1000))
    events = _customer_events(store, customer_id)
    keys = _customer_keys(store, customer_id)
    pipe = w.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    offer_ids = _offers_with_usage(store, offer_ids)
    for offer in offer_ids:
        pipe.hdel(k.offer_usage(offer), f"c:{customer_id}")
    for sid, event in events:
        pipe.xdel(k.stream, sid)
        pipe.unlink(k.dedupe(str(event["event_id"])))
    results = pipe.execute()
    removed_keys = sum(int(r) for r in results[: len(keys)])
    removed_events = sum(int(r) for r in results[len(keys) + len(offer_ids) :: 2])
    return ForgetReport(removed_keys, removed_events)


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)

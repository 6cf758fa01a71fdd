"""Offer usage and caps, and the offer counts the ranking learns from, in Redis.

Caps are enforced by Lua scripts over the keys of one offer (``{o:<offer_id>}``), so
concurrent redemptions against a cap of one let exactly one through, on one Redis or a
cluster. Keys are described in docs/feature-store.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from feature_store.keys import OFFER_DAY_TTL
from feature_store.store import FeatureStore, as_text

# KEYS[1] offer usage hash. ARGV: customer, event_id, cost, per-customer cap (0 = none),
# budget (0 = none). Idempotent per event_id (a retried call is not counted twice).
# Returns "" when granted, else the reason.
_REDEEM = """
if redis.call('HEXISTS', KEYS[1], 'e:' .. ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], 'e:' .. ARGV[2], '1')  -- a write, so a WAIT after it covers the first
  return ''
end
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


def redeem(
    store: FeatureStore,
    offer_id: str,
    customer_id: str,
    event_id: str,
    cost: float,
    max_per_customer: int = 0,
    budget: float = 0.0,
) -> str | None:
    """Count a redemption if caps allow; None when granted, else why not.

    With replicas awaited (FeatureStore.wait_replicas) a grant is returned only once a
    replica has it: a failover cannot forget an acknowledged redemption and grant it again.
    """
    reason = store.confirmed(
        store.script(_REDEEM),
        [store.keys.offer_usage(offer_id)],
        [customer_id, event_id, cost, max_per_customer, budget],
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


def offers_with_usage(store: FeatureStore, offer_ids: list[str]) -> list[str]:
    """The catalog's offers and every offer ever redeemed (retired ones included)."""
    used = {as_text(o) for o in store.writer.smembers(store.keys.offers_used)}
    return sorted(used | set(offer_ids))


def offer_totals(store: FeatureStore, offer_ids: list[str]) -> dict[str, tuple[OfferStats, float]]:
    """Every offer's observed funnel (impressions, clicks, redemptions; by segment too) and its
    spend so far, in one round trip: the marketers' view, not one customer's."""
    k = store.keys
    pipe = store.reader.pipeline(transaction=False)
    pipe.hgetall(k.offer_stats)
    for offer in offer_ids:
        pipe.hget(k.offer_usage(offer), "spent")
    raw_stats, *spent = pipe.execute()
    counts: dict[str, dict[str, int]] = {}  # offer -> "kind" or "kind|segment" -> n
    for name, n in raw_stats.items():
        offer, _, rest = as_text(name).partition("|")
        counts.setdefault(offer, {})[rest] = int(n)
    out = {}
    for offer, money in zip(offer_ids, spent, strict=True):
        c = counts.get(offer, {})
        segments = sorted({r.partition("|")[2] for r in c if "|" in r})
        by_segment = {
            seg: OfferStats(
                impressions=c.get(f"impression|{seg}", 0),
                clicks=c.get(f"click|{seg}", 0),
                redemptions=c.get(f"redemption|{seg}", 0),
            )
            for seg in segments
        }
        stats = OfferStats(
            impressions=c.get("impression", 0),
            clicks=c.get("click", 0),
            redemptions=c.get("redemption", 0),
            by_segment=by_segment,
        )
        out[offer] = (stats, float(money or 0.0))
    return out

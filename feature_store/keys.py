"""Every Redis key recsvc uses, in one place (documented in docs/feature-store.md).

Keys are ``<namespace>:v<SCHEMA_VERSION>:...``. The part in braces is a Redis Cluster hash
tag: all keys of one customer share ``{c:<id>}`` and so one shard; event keys share
``{events}`` (one Lua script appends and deduplicates a batch atomically) and catalog-wide
keys share ``{catalog}``. Bulk-loaded features live under a generation ``g<n>`` and
``live`` names the generation readers use, so a load becomes visible all at once.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 1

# Bounds and TTLs (seconds). Real-time keys are bounded in size rather than expired: a
# customer's activity stays until ForgetCustomer or a newer load makes it moot.
RECENT_MAX = 50  # newest product events per customer
PURCHASED_MAX = 500  # newest purchased products per customer
DEDUPE_TTL = 24 * 3600  # an event_id is remembered this long
TREND_HALF_LIFE_DAYS = 7.0  # decay of the real-time popularity counters
OFFER_DAY_TTL = 2 * 86400  # a day's offer impression counters outlive the day (time zones)
MAX_DESCRIBED = 100_000  # products described live (UpdateProducts) until training adopts them
TREND_EPOCH = 1_767_225_600  # 2026-01-01 UTC: the counters' time origin (see decay_factor)
PAGE_TTL = 30 * 60  # a paged list's shown products are kept this long after its last page
PAGE_MAX = 1000  # products one paged list may show (then it has no further page)


def decay_factor(ts: float) -> float:
    """Weight of an event at ``ts`` in a decaying counter stored without rewrites.

    Instead of shrinking every score over time, each increment grows by 2^(age/half-life):
    ranking by the stored score equals ranking by exponentially decayed counts.
    """
    return float(2.0 ** ((ts - TREND_EPOCH) / (TREND_HALF_LIFE_DAYS * 86400.0)))


@dataclass(frozen=True)
class Keys:
    namespace: str = "recsvc"

    @property
    def prefix(self) -> str:
        return f"{self.namespace}:v{SCHEMA_VERSION}"

    # -- generations (bulk loads) -------------------------------------------------------
    @property
    def live(self) -> str:
        """STRING: the generation readers use (an integer); absent = nothing loaded."""
        return f"{self.prefix}:live"

    @property
    def generation_counter(self) -> str:
        """STRING: INCR gives each load a new generation number."""
        return f"{self.prefix}:generation"

    @property
    def generations(self) -> str:
        """SET: generations that may have keys (the live one, one being loaded, leftovers)."""
        return f"{self.prefix}:loads"

    def generation_pattern(self, gen: int) -> str:
        """SCAN pattern matching every key of one generation."""
        return f"{self.prefix}:g{gen}:*"

    def meta(self, gen: int) -> str:
        """STRING: JSON about one load (loaded_at, model_version, customers, products)."""
        return f"{self.prefix}:g{gen}:meta"

    def profile(self, gen: int, customer_id: str) -> str:
        """STRING: JSON of a customer's loaded features (feature_store.bulk.PROFILE_FIELDS)."""
        return f"{self.prefix}:g{gen}:{{c:{customer_id}}}:profile"

    def profile_around_generation(self, customer_id: str) -> tuple[str, str]:
        """``profile(gen, id)`` is ``head + str(gen) + tail``: for a script that reads the
        live generation and the profile in one call."""
        return f"{self.prefix}:g", f":{{c:{customer_id}}}:profile"

    def product(self, gen: int, product_id: str) -> str:
        """STRING: JSON of a product's loaded features: category, price, in_stock, popularity."""
        return f"{self.prefix}:g{gen}:{{p:{product_id}}}:product"

    # -- real time (events) ----------------------------------------------------------------
    def recent(self, customer_id: str) -> str:
        """LIST, newest first: "type|product_id|ts_ms|quantity", at most RECENT_MAX."""
        return f"{self.prefix}:{{c:{customer_id}}}:recent"

    def purchased(self, customer_id: str) -> str:
        """ZSET product_id -> ts_ms of the last purchase, at most PURCHASED_MAX."""
        return f"{self.prefix}:{{c:{customer_id}}}:purchased"

    def activity(self, customer_id: str) -> str:
        """HASH: counters "n:<type>", "spend", "last_seen"/"last_purchase" (ms)."""
        return f"{self.prefix}:{{c:{customer_id}}}:activity"

    def customer_keys(self, customer_id: str) -> tuple[str, str, str]:
        return self.recent(customer_id), self.purchased(customer_id), self.activity(customer_id)

    def loyalty(self, customer_id: str) -> str:
        """HASH: tier, points and the live generation when SetLoyalty set them; they win over
        the loaded profile until a newer generation is loaded."""
        return f"{self.prefix}:{{c:{customer_id}}}:loyalty"

    def offer_impressions(self, customer_id: str, day: str) -> str:
        """HASH offer_id -> impressions on ``day`` (YYYYMMDD, UTC); TTL OFFER_DAY_TTL."""
        return f"{self.prefix}:{{c:{customer_id}}}:offers:{day}"

    def offer_usage(self, offer_id: str) -> str:
        """HASH: "spent" (total cost of redemptions), "c:<customer_id>" (redemptions) and
        "e:<event_id>" (redemption events counted, for idempotent retries)."""
        return f"{self.prefix}:{{o:{offer_id}}}:usage"

    @property
    def offers_used(self) -> str:
        """SET of offer ids that have usage hashes (so forget finds retired offers too)."""
        return f"{self.prefix}:{{offers}}:used"

    @property
    def offer_stats(self) -> str:
        """HASH "<offer_id>|<event>" and "<offer_id>|<event>|<segment>" -> count, event one of
        impression, click, redemption (the bandit's observations)."""
        return f"{self.prefix}:{{offers}}:stats"

    @property
    def tombstones(self) -> str:
        """HASH customer_id -> Unix ms of ForgetCustomer; training and export leave them out."""
        return f"{self.prefix}:{{privacy}}:tombstones"

    @property
    def stream(self) -> str:
        """STREAM of accepted events, field "e" = JSON (formats.events.encode)."""
        return f"{self.prefix}:{{events}}:stream"

    def dedupe(self, event_id: str) -> str:
        """STRING with TTL DEDUPE_TTL: the stream id of an accepted event_id."""
        return f"{self.prefix}:{{events}}:seen:{event_id}"

    def trend(self, category: str | None = None) -> str:
        """ZSET product_id -> decayed event weight (see decay_factor), overall or per category."""
        tail = f":{category}" if category is not None else ""
        return f"{self.prefix}:{{catalog}}:trend{tail}"

    # -- paging (RecommendProducts page_token) ------------------------------------------------
    def page_shown(self, session: str) -> str:
        """SET of the product ids a paged list has shown (at most PAGE_MAX), TTL PAGE_TTL
        (RECSVC_PAGE_TTL) renewed by each page. ``session`` is the token's random id (hex);
        the set names no customer."""
        return f"{self.prefix}:{{page:{session}}}:shown"

    # -- reloads across workers and replicas (feature_store.reload_signals) ---------------------
    @property
    def reload_signals(self) -> str:
        """HASH "<topic>:seq" -> sequence number, "<topic>" -> JSON {payload, at_ms, origin}
        of the latest reload of that topic (model, offers, ...); every worker polls it."""
        return f"{self.prefix}:reload"

    # -- catalog changes (UpdateProducts) ----------------------------------------------------
    @property
    def stock(self) -> str:
        """HASH product_id -> units in stock, as last set by UpdateProducts."""
        return f"{self.prefix}:{{catalog}}:stock"

    @property
    def price(self) -> str:
        """HASH product_id -> price, as last set by UpdateProducts."""
        return f"{self.prefix}:{{catalog}}:price"

    @property
    def products(self) -> str:
        """HASH product_id -> JSON definition set by UpdateProducts: title, category,
        attributes (object), created_ms (first described); at most MAX_DESCRIBED products."""
        return f"{self.prefix}:{{catalog}}:products"

    @property
    def changes(self) -> str:
        """ZSET product_id -> sequence number of its last change."""
        return f"{self.prefix}:{{catalog}}:changes"

    @property
    def change_seq(self) -> str:
        """STRING: the latest change sequence number (servers compare it each request)."""
        return f"{self.prefix}:{{catalog}}:seq"

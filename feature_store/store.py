"""Reads and writes of the real-time features: events, customer activity, catalog changes.

Every key comes from ``feature_store.keys``. Writes that must be atomic are Lua scripts over
keys of one hash tag (so they run on one shard of a cluster); everything else is a
non-transactional pipeline, one round trip per phase. Works with ``redis.Redis`` and
``redis.cluster.RedisCluster`` alike.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from feature_store.connection import connect
from feature_store.keys import DEDUPE_TTL, PURCHASED_MAX, RECENT_MAX, Keys, decay_factor
from formats.events import INTEREST, Event, encode

log = logging.getLogger(__name__)

# KEYS[1] stream, KEYS[2..] one dedupe key per event; ARGV[1] TTL, ARGV[2..] payloads.
# Returns per event the new stream id, or "" when the event_id was seen within the TTL (a
# replay, whose dedupe TTL starts again).
_APPEND = """
local out = {}
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    -- A write even for a replay, so that a WAIT after it also covers the first append.
    redis.call('EXPIRE', KEYS[i], ARGV[1])
    out[i - 1] = ''
  else
    local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
    redis.call('SET', KEYS[i], id, 'EX', ARGV[1])
    out[i - 1] = id
  end
end
return out
"""

# KEYS: (recent, purchased, activity) per customer. ARGV: RECENT_MAX, PURCHASED_MAX, then per
# customer _CustomerUpdate.script_args(): n, recent entries..., n, (type, count)..., n,
# (product, ts)..., spend, last_seen, last_purchase (0 = none). last_seen and last_purchase
# only move forward: a batch that arrives late never sets them back. On a cluster the script
# runs once per customer (its three keys share the customer's hash tag).
_ACTIVITY = """
local rmax, pmax = tonumber(ARGV[1]), tonumber(ARGV[2])
local a = 3
for c = 1, #KEYS, 3 do
  local recent, purchased, activity = KEYS[c], KEYS[c + 1], KEYS[c + 2]
  local n = tonumber(ARGV[a]); a = a + 1
  if n > 0 then
    redis.call('LPUSH', recent, unpack(ARGV, a, a + n - 1)); a = a + n
    redis.call('LTRIM', recent, 0, rmax - 1)
  end
  n = tonumber(ARGV[a]); a = a + 1
  for _ = 1, n do redis.call('HINCRBY', activity, 'n:' .. ARGV[a], ARGV[a + 1]); a = a + 2 end
  n = tonumber(ARGV[a]); a = a + 1
  if n > 0 then
    for _ = 1, n do redis.call('ZADD', purchased, ARGV[a + 1], ARGV[a]); a = a + 2 end
    redis.call('ZREMRANGEBYRANK', purchased, 0, -pmax - 1)
  end
  if tonumber(ARGV[a]) > 0 then redis.call('HINCRBYFLOAT', activity, 'spend', ARGV[a]) end
  local seen = tonumber(redis.call('HGET', activity, 'last_seen') or '0')
  if tonumber(ARGV[a + 1]) > seen then redis.call('HSET', activity, 'last_seen', ARGV[a + 1]) end
  local bought = tonumber(redis.call('HGET', activity, 'last_purchase') or '0')
  if tonumber(ARGV[a + 2]) > bought then
    redis.call('HSET', activity, 'last_purchase', ARGV[a + 2])
  end
  a = a + 3
end
return 1
"""

# The serving read of one customer (single Redis only: the profile key's generation comes
# from the live key in the same call, so it cannot be declared up front as a cluster needs).
# KEYS: recent, purchased, change_seq, live, loyalty, counters. ARGV: the profile key's text
# before and after the generation number.
_ACTIVITY_READ = """
local live = redis.call('GET', KEYS[4])
local profile = false
if live then profile = redis.call('GET', ARGV[1] .. live .. ARGV[2]) end
return {redis.call('LRANGE', KEYS[1], 0, -1), redis.call('ZRANGE', KEYS[2], 0, -1),
        redis.call('GET', KEYS[3]), live, profile,
        redis.call('HGETALL', KEYS[5]), redis.call('HGETALL', KEYS[6])}
"""

# KEYS: trend keys; ARGV: (key index, product_id, increment) triples.
TREND_SLICE = 256
SERVED_MAX_PENDING = 100_000
_TREND = """
for i = 1, #ARGV, 3 do
  redis.call('ZINCRBY', KEYS[tonumber(ARGV[i])], ARGV[i + 2], ARGV[i + 1])
end
return 1
"""


@dataclass(frozen=True)
class RecentEvent:
    type: str  # an interest type: view, click, add_to_cart, purchase
    product_id: str
    ts_ms: int
    quantity: float


@dataclass(frozen=True)
class Activity:
    """A customer's real-time state, read in one round trip on the serving path."""

    recent: tuple[RecentEvent, ...] = ()  # newest first
    purchased: frozenset[str] = frozenset()
    change_seq: int = 0  # the catalog's change sequence (see FeatureStore.changes_since)
    profile: dict[str, Any] | None = None  # loaded features (feature_store.bulk), if any
    loyalty: dict[str, str] = field(default_factory=dict)  # tier/points set since the load
    counters: dict[str, str] = field(default_factory=dict)  # the activity hash
    generation: int | None = None  # the live generation of loaded features

    @property
    def consent(self) -> bool:
        """False only when the customers file said so: personalization is opt-out."""
        return bool((self.profile or {}).get("consent_personalization", True) is not False)

    @property
    def _loyalty_current(self) -> bool:
        """SetLoyalty values win unless a load (with newer customer data) came after them."""
        return int(self.loyalty.get("generation", 0)) >= (self.generation or 0)

    @property
    def tier(self) -> str | None:
        if self._loyalty_current and self.loyalty.get("tier"):
            return self.loyalty["tier"]
        tier = (self.profile or {}).get("tier")
        return str(tier) if tier else None

    @property
    def points(self) -> float:
        if self._loyalty_current and "points" in self.loyalty:
            return float(self.loyalty["points"])
        return float((self.profile or {}).get("points") or 0.0)

    @property
    def purchases(self) -> int:
        """Purchases in the loaded history plus those tracked since."""
        loaded = int((self.profile or {}).get("purchases") or 0)
        return loaded + int(self.counters.get("n:purchase", 0))


@dataclass(frozen=True)
class _CustomerUpdate:
    """What one batch changes for one customer (applied by script or pipeline)."""

    customer_id: str
    recent: list[str]  # "type|product|ts|quantity", oldest first (LPUSH puts the last on top)
    counts: dict[str, int]
    purchased: dict[str, int]  # product -> ts_ms
    spend: float
    last_seen: int
    last_purchase: int  # 0 = no purchase in the batch

    def script_args(self) -> list[str | int | float]:
        args: list[str | int | float] = [len(self.recent), *self.recent, len(self.counts)]
        for kind, n in self.counts.items():
            args += [kind, n]
        args.append(len(self.purchased))
        for product, ts in self.purchased.items():
            args += [product, ts]
        return [*args, repr(self.spend), self.last_seen, self.last_purchase]


def _customer_update(customer_id: str, events: list[Event]) -> _CustomerUpdate:
    events.sort(key=lambda e: e.ts_ms)
    counts: dict[str, int] = defaultdict(int)
    for e in events:
        counts[e.type] += 1
    purchases = [e for e in events if e.type == "purchase"]
    return _CustomerUpdate(
        customer_id=customer_id,
        recent=[
            f"{INTEREST[e.type]}|{e.product_id}|{e.ts_ms}|{e.quantity:g}"
            for e in events
            if e.type in INTEREST
        ],
        counts=dict(counts),
        purchased={e.product_id: e.ts_ms for e in purchases},
        spend=sum(e.amount for e in purchases),
        last_seen=events[-1].ts_ms,
        last_purchase=purchases[-1].ts_ms if purchases else 0,
    )


class NotReplicated(RedisError):
    """A write the master has but too few replicas confirmed: not acknowledged; a retry is
    deduplicated (the script is idempotent), and goes to the promoted replica after a
    failover."""


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class FeatureStore:
    """One Redis (or cluster), two clients: short timeouts for reads, longer for writes."""

    def __init__(
        self,
        url: str,
        cluster: bool = False,
        namespace: str = "recsvc",
        read_timeout_s: float = 0.05,
        write_timeout_s: float = 2.0,
        trend_flush_s: float = 0.0,
        wait_replicas: int = 0,
        wait_timeout_s: float = 0.5,
    ) -> None:
        """``trend_flush_s`` > 0: trend counters are summed in this process and written every
        that many seconds (a popular product then costs one ZINCRBY per interval instead of
        one per batch; a crash loses at most one interval of these derived counters).

        ``wait_replicas`` > 0: writes that are acknowledged to a caller (events, offer
        redemptions) return only once WAIT confirms that many replicas have them, within
        ``wait_timeout_s``; otherwise they raise NotReplicated (see confirmed())."""
        self.keys = Keys(namespace)
        self.cluster = cluster
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = max(1, round(wait_timeout_s * 1000))
        self._topology = threading.Lock()
        self._generation: int | None = None
        self.reader = connect(url, cluster, read_timeout_s)
        self.writer = connect(url, cluster, write_timeout_s)
        for client in (self.reader, self.writer):
            # Fail fast: the serving path degrades, and event clients retry the whole batch.
            client.retry = Retry(NoBackoff(), 0)
        self._append = self.writer.register_script(_APPEND)
        self._trend = self.writer.register_script(_TREND)
        self._apply = self.writer.register_script(_ACTIVITY)
        self._read = None if cluster else self.reader.register_script(_ACTIVITY_READ)
        self._scripts: dict[str, Any] = {}  # those of other modules (see script())
        self._pending: dict[tuple[str, str], float] = defaultdict(float)
        self._served: list[str] = []  # promotion_served records waiting for the next flush
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if trend_flush_s > 0:
            self._flusher = threading.Thread(
                target=self._flush_loop, args=(trend_flush_s,), name="trend-flush", daemon=True
            )
            self._flusher.start()

    def script(self, source: str) -> Any:
        """A Lua script on the writer, registered once per store (redis-py's Script)."""
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = self.writer.register_script(source)
        return found

    def reader_script(self, source: str) -> Any:
        """A read-only Lua script on the reader (short timeout), registered once."""
        key = "reader:" + source
        found = self._scripts.get(key)
        if found is None:
            found = self._scripts[key] = self.reader.register_script(source)
        return found

    def confirmed(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run a write ``script`` (one hash tag); with ``wait_replicas``, WAIT on the same
        connection until that many replicas have it, else raise NotReplicated.

        WAIT covers the writes of its own connection, so the script and the WAIT go in one
        pipeline to the node that owns the keys (on a cluster, that shard's master). On an
        error the cluster's map of shards is refreshed: after a failover the next call goes
        to the promoted replica.
        """
        if not self.wait_replicas:
            return script(keys=keys, args=args)
        client = self.writer
        if self.cluster:
            client = client.get_redis_connection(client.get_node_from_key(keys[0]))
        try:
            for attempt in range(2):
                pipe = client.pipeline(transaction=False)
                pipe.evalsha(script.sha, len(keys), *keys, *args)
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
                try:
                    result, acked = pipe.execute()
                except NoScriptError:
                    if attempt:
                        raise
                    client.script_load(script.script)
                    continue
                break
        except RedisError:
            if self.cluster:
                with self._topology:
                    self.writer.nodes_manager.initialize()
            raise
        if int(acked) < self.wait_replicas:
            raise NotReplicated(
                f"written, but {int(acked)} of {self.wait_replicas} replicas confirmed it "
                f"within {self.wait_timeout_ms} ms (RECSVC_REDIS_WAIT_REPLICAS)"
            )
        return result

    def close(self) -> None:
        if self._flusher is not None:
            self._stop.set()
            self._flusher.join(timeout=5)
            try:
                self.flush_trends()
                self.flush_served()
            except RedisError:
                log.warning("trend counters of the last interval not written", exc_info=True)
        for client in (self.reader, self.writer):
            client.close()

    # -- events ----------------------------------------------------------------------------
    def append_events(self, events: Sequence[Event]) -> list[str | None]:
        """Append to the stream atomically, skipping event_ids seen within DEDUPE_TTL.

        Returns per event its stream id, or None for a duplicate. Raises redis errors
        (NotReplicated too): then nothing of the batch was acknowledged, and a retry is
        deduplicated.
        """
        if not events:
            return []
        k = self.keys
        keys = [k.stream, *(k.dedupe(e.event_id) for e in events)]
        ids = self.confirmed(self._append, keys, [DEDUPE_TTL, *(encode(e) for e in events)])
        return [as_text(i) or None for i in ids]

    def apply_activity(self, events: Iterable[Event], categories: dict[str, str]) -> None:
        """Update recent products, purchases, counters and trend counters.

        One script call on a single Redis; on a cluster, where a script must stay within one
        hash tag, one pipeline of plain commands (same effect, more round trips for Redis).
        ``categories`` maps product ids to categories for the per-category trend counters.
        """
        events = list(events)
        by_customer: dict[str, list[Event]] = defaultdict(list)
        for e in events:
            by_customer[e.customer_id].append(e)
        if not by_customer:
            return
        updates = [_customer_update(customer, evs) for customer, evs in by_customer.items()]
        if self.cluster:
            self._apply_pipelined(updates)
        else:
            keys: list[str] = []
            args: list[str | int | float] = [RECENT_MAX, PURCHASED_MAX]
            for u in updates:
                keys += self.keys.customer_keys(u.customer_id)
                args += u.script_args()
            self._apply(keys=keys, args=args)
        with self._pending_lock:
            for e in events:
                if e.type not in INTEREST:
                    continue
                weight = decay_factor(e.ts_ms / 1000.0)
                self._pending[("", e.product_id)] += weight
                if (category := categories.get(e.product_id)) is not None:
                    self._pending[(category, e.product_id)] += weight
        if self._flusher is None:
            self.flush_trends()

    def flush_trends(self) -> None:
        """Write the summed trend increments (one script call; all keys share {catalog})."""
        with self._pending_lock:
            trend, self._pending = self._pending, defaultdict(float)
        items = list(trend.items())
        # In slices: one script with thousands of ZINCRBY would block Redis for tens of ms.
        for start in range(0, len(items), TREND_SLICE):
            part = items[start : start + TREND_SLICE]
            names = sorted({c for (c, _), _ in part})
            slot = {c: i + 1 for i, c in enumerate(names)}
            trend_args: list[str | int | float] = []
            for (category, product), inc in part:
                trend_args += [slot[category], product, inc]
            try:
                self._trend(keys=[self.keys.trend(c or None) for c in names], args=trend_args)
            except RedisError:
                with self._pending_lock:  # keep the rest for the next attempt
                    for key, inc in items[start:]:
                        self._pending[key] += inc
                raise

    def record_served(self, records: Sequence[Event]) -> None:
        """Append server records (promotion_served) to the event stream: with the trend
        counters when they are flushed periodically, at once otherwise."""
        payloads = [encode(r) for r in records]
        if self._flusher is None:
            self._write_served(payloads)
            return
        with self._pending_lock:
            if len(self._served) < SERVED_MAX_PENDING:  # Redis down for long: drop, not grow
                self._served.extend(payloads)

    def flush_served(self) -> None:
        with self._pending_lock:
            batch, self._served = self._served, []
        if not batch:
            return
        try:
            self._write_served(batch)
        except RedisError:
            with self._pending_lock:
                self._served[:0] = batch[: SERVED_MAX_PENDING - len(self._served)]
            raise

    def _write_served(self, payloads: list[str]) -> None:
        pipe = self.writer.pipeline(transaction=False)
        for payload in payloads:
            pipe.xadd(self.keys.stream, {"e": payload})
        pipe.execute()

    def _flush_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.flush_trends()
                self.flush_served()
            except RedisError as exc:
                log.debug("trend flush failed, retried next interval: %s", exc)

    def _apply_pipelined(self, updates: list[_CustomerUpdate]) -> None:
        """On a cluster: the activity script once per customer, all in one pipeline."""
        pending = updates
        for _ in range(2):  # a second round only for shards that lacked the script
            pipe = self.writer.pipeline(transaction=False)
            for u in pending:
                keys = self.keys.customer_keys(u.customer_id)
                # execute_command: redis-py blocks pipe.evalsha on a cluster, not the command.
                pipe.execute_command(
                    "EVALSHA",
                    self._apply.sha,
                    len(keys),
                    *keys,
                    RECENT_MAX,
                    PURCHASED_MAX,
                    *u.script_args(),
                )
            replies = pipe.execute(raise_on_error=False)
            failed = [
                (u, r) for u, r in zip(pending, replies, strict=True) if isinstance(r, Exception)
            ]
            if not failed:
                return
            if not all(isinstance(r, NoScriptError) for _, r in failed):
                raise next(r for _, r in failed if not isinstance(r, NoScriptError))
            # A shard without the script (new, or a promoted replica): load it everywhere and
            # run again only what did not run, so no counter is incremented twice.
            self.writer.script_load(_ACTIVITY)
            pending = [u for u, _ in failed]
        raise NoScriptError("the activity script could not be loaded on every shard")

    # -- serving reads -----------------------------------------------------------------------
    def activity(self, customer_id: str) -> Activity:
        """Recent products, purchased products and the catalog change sequence, one trip."""
        k = self.keys
        recent, purchased, counters = k.customer_keys(customer_id)
        if self._read is not None:
            # One EVALSHA: half the time of a 7-command pipeline in redis-py (packing and
            # parsing seven commands in Python cost more than the round trip itself).
            raw = self._read(
                keys=[recent, purchased, k.change_seq, k.live, k.loyalty(customer_id), counters],
                args=list(k.profile_around_generation(customer_id)),
            )
            raw_recent, raw_purchased, seq, live, raw_profile = raw[:5]
            loyalty = dict(zip(raw[5][::2], raw[5][1::2], strict=True))
            raw_counters = dict(zip(raw[6][::2], raw[6][1::2], strict=True))
        else:
            gen = self._generation  # the live generation last seen; checked in the same trip
            pipe = self.reader.pipeline(transaction=False)
            pipe.lrange(recent, 0, -1)
            pipe.zrange(purchased, 0, -1)
            pipe.get(k.change_seq)
            pipe.get(k.live)
            pipe.get(k.profile(gen or 0, customer_id))
            pipe.hgetall(k.loyalty(customer_id))
            pipe.hgetall(counters)
            raw_recent, raw_purchased, seq, live, raw_profile, loyalty, raw_counters = (
                pipe.execute()
            )
            if live is not None and int(live) != gen:  # a load switched generations: read again
                self._generation = int(live)
                raw_profile = self.reader.get(k.profile(self._generation, customer_id))
        events = []
        for entry in raw_recent:
            kind, rest = as_text(entry).split("|", 1)  # product ids may contain "|"
            product, ts, qty = rest.rsplit("|", 2)
            events.append(RecentEvent(kind, product, int(ts), float(qty)))
        return Activity(
            recent=tuple(events),
            purchased=frozenset(as_text(p) for p in raw_purchased),
            change_seq=int(seq or 0),
            profile=None if not raw_profile else dict(orjson.loads(raw_profile)),
            loyalty={as_text(a): as_text(b) for a, b in loyalty.items()},
            counters={as_text(a): as_text(b) for a, b in raw_counters.items()},
            generation=None if live is None else int(live),
        )

    def live_generation(self) -> int | None:
        raw = self.reader.get(self.keys.live)
        return None if raw is None else int(raw)

    def segments(self, customer_ids: Iterable[str]) -> dict[str, str]:
        """Loaded value segments of these customers (those without one are left out)."""
        ids = list(customer_ids)
        gen = self.live_generation()
        if gen is None or not ids:
            return {}
        pipe = self.reader.pipeline(transaction=False)
        for customer in ids:
            pipe.get(self.keys.profile(gen, customer))
        found = {}
        for customer, raw in zip(ids, pipe.execute(), strict=True):
            segment = json.loads(raw).get("segment") if raw is not None else None
            if segment:
                found[customer] = str(segment)
        return found

    def profile(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's loaded features (live generation), or None when not loaded."""
        return self._loaded(lambda gen: self.keys.profile(gen, customer_id))

    def product(self, product_id: str) -> dict[str, Any] | None:
        """The product's loaded features (live generation), or None when not loaded."""
        return self._loaded(lambda gen: self.keys.product(gen, product_id))

    def live_meta(self) -> dict[str, Any] | None:
        """What the live generation's load wrote about itself (feature_store.bulk), or None."""
        return self._loaded(self.keys.meta)

    def _loaded(self, key_of: Callable[[int], str]) -> dict[str, Any] | None:
        # A load may switch generations (and delete the old one) between reading "live" and
        # the key: then read again. Generations only grow, so an unchanged "live" means the
        # key is really absent.
        gen = self.live_generation()
        while gen is not None:
            raw = self.reader.get(key_of(gen))
            if raw is not None:
                return dict(json.loads(raw))
            latest = self.live_generation()
            if latest == gen:
                return None
            gen = latest
        return None

    def change_seq(self) -> int:
        """The catalog's change sequence: it grows with every UpdateProducts."""
        return int(self.reader.get(self.keys.change_seq) or 0)

    def trending(self, category: str | None = None, n: int = 20) -> list[tuple[str, float]]:
        """The products with the highest decayed event weight (scores relative to each other)."""
        rows = self.reader.zrevrange(self.keys.trend(category), 0, n - 1, withscores=True)
        return [(as_text(p), float(s)) for p, s in rows]

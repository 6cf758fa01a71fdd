"""Personalized offers: the offer catalog, eligibility, and expected-value ranking.

No gRPC and no Redis in here: the caller reads what the customer has used of each offer
(``OfferUsage``), what has been observed of each offer (``OfferStats``) and the customer's
affinity to each offer's targets (from the model vectors), and passes them in as plain data.

The catalog file
----------------
YAML (``.yaml``/``.yml``) or JSON (``.json``), version 1::

    version: 1
    tiers: [bronze, silver, gold, platinum]   # optional: the programme's tier names
    offers:
      - offer_id: coffee-10
        title: 10% off coffee
        kind: percent_off          # percent_off | amount_off | points_multiplier
                                   # | free_shipping | gift
        value: 10                  # the kind's parameter (see KIND_VALUE below)
        categories: [coffee]       # targets; products and categories both empty = store-wide
        cost: 1.2                  # what one redemption costs the business (budgets count it)
        value_to_business: 4.0     # net value of one redemption (see below)
        segments: []               # eligibility: every list empty = anyone
        lifecycle_stages: []
        tiers: []
        surfaces: [home, cart]     # home | product_page | cart | checkout
        channels: []               # the request's device, free text: ios, android, web...
        min_points: 0
        first_purchase_only: false
        birthday_window_days: 7    # within 7 days either side of the birthday
        valid_from: 2026-01-01     # a date starts at 00:00 UTC; datetimes are UTC unless
        valid_until: 2026-12-31    # they say otherwise; a date ends at the end of that day
        max_redemptions_per_customer: 1   # over the offer's lifetime
        max_impressions_per_day: 3        # per customer, per UTC day
        budget: 500                # total cost of all redemptions, in ``cost`` units
        reason: ""                 # the reason shown when no personal one applies

Only ``offer_id``, ``title``, ``kind``, ``cost`` and ``value_to_business`` are required (and
``value`` for the kinds that need one). Unknown keys, wrong types, unknown kinds, segments,
stages, surfaces or tiers, duplicate ids, empty validity windows, negative numbers and
unsupported versions are errors naming the file, the offer (index and id) and the field.

Value to the business
---------------------
``value_to_business`` is the expected *net* value of one redemption: the incremental margin the
redeemed order brings (including, if you count it, longer-term value such as a won-back or
newly acquired customer's future margin) minus ``cost``. It is what ranking multiplies by the
probability of redemption; ``cost`` is only what budgets count.

Probability of redemption
-------------------------
For each eligible offer::

    theta ~ Beta(alpha0 + redemptions, beta0 + impressions - redemptions)    (Thompson draw)
    logit(p) = logit(theta) + affinity_weight * clip(affinity, -3, 3)
                            + match_weight * n0 / (n0 + impressions)   if the offer is targeted
    expected_value = p * value_to_business

``theta`` is the offer's redemption rate per impression. When the customer's segment has its own
counts (``OfferStats.by_segment``), the draw is from the segment's counts shrunk towards the
offer's overall rate with ``segment_prior_strength`` pseudo-impressions. ``affinity`` is a z-score:
how much more than a typical customer this customer likes the offer's target products or
categories (0 = typical, +1 = one standard deviation above; store-wide offers and missing
values are 0), so that on average it leaves the observed rate unchanged. A targeted offer
(segments, stages, tiers, points, first purchase or birthday rules) starts with a bonus for
being aimed at this customer that fades as its own impressions accumulate (``n0`` =
``match_fade_impressions``). Thompson sampling explores new offers (a wide posterior sometimes
draws high) and lets weak ones fade (their draws concentrate low). With ``OfferPolicy(sample=
False)`` the posterior mean replaces the draw (greedy, deterministic).

Unknown customers and consent
-----------------------------
An unknown customer is a prospect (segment and stage ``prospect``, no purchases). A
customer with ``consent_personalization=False`` is treated like a prospect as well: segment,
stage, tier, points, birthday, top categories and affinity are not used, so only offers open to
prospects remain, ranked by their overall rates, with non-personal reasons. Their purchase count
and their usage still apply, because they are the offer's terms (first purchase only,
redemption and impression caps), not personalization.
"""

from __future__ import annotations

import calendar
import difflib
import hashlib
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import yaml

from feature_store.offer_usage import OfferStats, OfferUsage
from formats.errors import InvalidRequest, NotFound
from formats.ids import MAX_ID_LENGTH
from formats.loyalty import (
    LIFECYCLE_STAGES,
    PROSPECT,
    SEGMENTS,
    SURFACES,
    WELCOME_STAGES,
    WIN_BACK_STAGES,
)

SUPPORTED_VERSIONS: Final = (1,)
KINDS: Final = ("percent_off", "amount_off", "points_multiplier", "free_shipping", "gift")
# What ``value`` means per kind, and whether the kind needs one.
KIND_VALUE: Final = {
    "percent_off": "percent off, above 0 and at most 100",
    "amount_off": "amount off in currency, above 0",
    "points_multiplier": "points multiplier, above 1 (2 = double points)",
    "free_shipping": "not used (0 when omitted)",
    "gift": "the gift's retail value in currency (0 when omitted)",
}

_OFFER_KEYS: Final = (
    "offer_id",
    "title",
    "kind",
    "value",
    "products",
    "categories",
    "cost",
    "value_to_business",
    "segments",
    "lifecycle_stages",
    "tiers",
    "min_points",
    "first_purchase_only",
    "birthday_window_days",
    "surfaces",
    "channels",
    "valid_from",
    "valid_until",
    "max_redemptions_per_customer",
    "budget",
    "max_impressions_per_day",
    "reason",
)
_TOP_KEYS: Final = ("version", "tiers", "offers")
_MAX_LISTED_ERRORS: Final = 50


class OfferCatalogError(ValueError):
    """The offer catalog cannot be used; ``errors`` lists every problem found, one a line."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        shown = self.errors[:_MAX_LISTED_ERRORS]
        more = len(self.errors) - len(shown)
        super().__init__("\n".join(shown) + (f"\n... and {more} more" if more > 0 else ""))


# -- the catalog ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    offer_id: str
    title: str
    kind: str
    value: float
    cost: float
    value_to_business: float
    products: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    lifecycle_stages: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()  # case-folded
    min_points: int = 0
    first_purchase_only: bool = False
    birthday_window_days: int | None = None
    surfaces: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()  # case-folded
    valid_from: datetime | None = None  # inclusive, UTC
    valid_until: datetime | None = None  # exclusive, UTC
    max_redemptions_per_customer: int | None = None
    budget: float | None = None
    max_impressions_per_day: int | None = None
    reason: str = ""

    @property
    def store_wide(self) -> bool:
        return not self.products and not self.categories

    @property
    def targeted(self) -> bool:
        """Aimed at some customers only (by who they are, not by where or when)."""
        return bool(
            self.segments
            or self.lifecycle_stages
            or self.tiers
            or self.min_points
            or self.first_purchase_only
            or self.birthday_window_days is not None
        )


@dataclass(frozen=True)
class OfferCatalog:
    version: int
    offers: tuple[Offer, ...]
    tiers: tuple[str, ...] = ()  # the programme's tier names (case-folded); empty = not declared
    source: str = ""
    digest: str = ""  # sha256 of the file's bytes: tells a reload whether anything changed
    _by_id: dict[str, Offer] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {o.offer_id: o for o in self.offers})

    def offer(self, offer_id: str) -> Offer:
        found = self._by_id.get(offer_id)
        if found is None:
            raise NotFound(f"offer {offer_id!r} is not in the offer catalog {self.source}")
        return found

    def __contains__(self, offer_id: object) -> bool:
        return offer_id in self._by_id

    def __len__(self) -> int:
        return len(self.offers)


def load_catalog(
    path: str | Path,
    segments: Collection[str] = SEGMENTS,
    stages: Collection[str] = LIFECYCLE_STAGES,
) -> OfferCatalog:
    """Read and validate an offer catalog (YAML or JSON by extension).

    ``segments`` and ``stages`` are the names offers may target (those of the loyalty
    analytics). Raises ``OfferCatalogError`` listing every problem.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise OfferCatalogError([f"{path}: unsupported extension {suffix!r}; use .yaml or .json"])
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise OfferCatalogError([f"{path}: cannot read: {e.strerror or e}"]) from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise OfferCatalogError([f"{path}: not UTF-8 text ({e.reason} at byte {e.start})"]) from e
    data: object
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise OfferCatalogError([f"{path}:{e.lineno}: invalid JSON: {e.msg}"]) from e
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problem = getattr(e, "problem", None) or str(e)
            raise OfferCatalogError([f"{where}: invalid YAML: {problem}"]) from e
    return parse_catalog(
        data,
        source=str(path),
        digest=hashlib.sha256(raw).hexdigest(),
        segments=segments,
        stages=stages,
    )


def parse_catalog(
    data: object,
    source: str = "<catalog>",
    digest: str = "",
    segments: Collection[str] = SEGMENTS,
    stages: Collection[str] = LIFECYCLE_STAGES,
) -> OfferCatalog:
    """Validate an already-parsed catalog document (what ``load_catalog`` does after reading)."""
    errors: list[str] = []
    if not isinstance(data, dict):
        raise OfferCatalogError(
            [f"{source}: the catalog must be a mapping with 'version' and 'offers'"]
        )
    version = data.get("version")
    if "version" not in data:
        errors.append(f"{source}: version: missing; this reader supports version 1")
    elif isinstance(version, bool) or not isinstance(version, int):
        errors.append(f"{source}: version: expected an integer, got {_show(version)}")
    elif version not in SUPPORTED_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_VERSIONS))
        errors.append(f"{source}: version: {version} is not supported (supported: {supported})")
    if errors:  # a document of another version may mean anything: stop here
        raise OfferCatalogError(errors)
    top = _Fields(f"{source}: ", data, errors)
    top.reject_unknown(_TOP_KEYS)
    tiers = tuple(t.casefold() for t in top.strings("tiers"))
    raw_offers = data.get("offers")
    offers: list[Offer] = []
    if "offers" not in data:
        errors.append(f"{source}: offers: missing; give a list of offers (may be empty)")
    elif not isinstance(raw_offers, list):
        errors.append(f"{source}: offers: expected a list, got {_show(raw_offers)}")
    else:
        seen: dict[str, int] = {}
        for i, item in enumerate(raw_offers):
            offer = _parse_offer(source, i, item, tiers, segments, stages, errors)
            # Duplicates are checked on the raw id, so they are found even in invalid offers.
            raw_id = item.get("offer_id") if isinstance(item, dict) else None
            if isinstance(raw_id, str) and raw_id.strip():
                if raw_id in seen:
                    errors.append(
                        f"{source}: offers[{i}] ({raw_id}): offer_id: duplicate of "
                        f"offers[{seen[raw_id]}]"
                    )
                    continue
                seen[raw_id] = i
            if offer is not None:
                offers.append(offer)
    if errors:
        raise OfferCatalogError(errors)
    assert isinstance(version, int)
    return OfferCatalog(
        version=version, offers=tuple(offers), tiers=tiers, source=source, digest=digest
    )


def check_targets(
    catalog: OfferCatalog, products: Collection[str], categories: Collection[str]
) -> list[str]:
    """Warnings for offer targets missing from the product catalog (not errors: a catalog of
    offers may be loaded before the products it names)."""
    warnings = []
    for o in catalog.offers:
        for p in o.products:
            if p not in products:
                warnings.append(f"offer {o.offer_id}: product {p!r} is not in the catalog")
        for c in o.categories:
            if c not in categories:
                warnings.append(f"offer {o.offer_id}: category {c!r} is not in the catalog")
    return warnings


class _Fields:
    """Typed reads from one mapping; every problem is appended to ``errors`` with its place."""

    def __init__(self, where: str, raw: Mapping[str, Any], errors: list[str]) -> None:
        self.where = where  # e.g. "offers.yaml: offers[3] (coffee-10): "
        self.raw = raw
        self.errors = errors

    def error(self, key: str, problem: str) -> None:
        self.errors.append(f"{self.where}{key}: {problem}")

    def reject_unknown(self, allowed: Sequence[str]) -> None:
        for key in self.raw:
            if key in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.error(str(key), f"unknown field{hint} (known: {', '.join(allowed)})")

    def string(self, key: str, required: bool = False, max_length: int = 0) -> str:
        value: Any = self.raw.get(key)  # absent and null (``key:`` in YAML) both mean omitted
        if value is None:
            if required:
                self.error(key, "missing")
            return ""
        if not isinstance(value, str):
            self.error(key, f"expected a string, got {_show(value)}")
            return ""
        if required and not value.strip():
            self.error(key, "is empty")
        if max_length and len(value) > max_length:
            self.error(key, f"is {len(value)} characters long; the maximum is {max_length}")
        return value

    def number(
        self,
        key: str,
        required: bool = False,
        integer: bool = False,
        positive: bool = False,
    ) -> float | None:
        """A finite number >= 0 (> 0 with ``positive``); None when absent and not required."""
        value: Any = self.raw.get(key)  # absent and null (``key:`` in YAML) both mean omitted
        if value is None:
            if required:
                self.error(key, "missing")
            return None
        # bool is an int in Python; true/false here is a mistake, not 1/0.
        wrong = not isinstance(value, int) if integer else not isinstance(value, int | float)
        if isinstance(value, bool) or wrong:
            expected = "an integer" if integer else "a number"
            self.error(key, f"expected {expected}, got {_show(value)}")
            return None
        if not math.isfinite(value):
            self.error(key, f"expected a finite number, got {value}")
            return None
        if value < 0:
            self.error(key, f"must not be negative, got {value}")
            return None
        if positive and value == 0:
            self.error(key, "must be above 0; omit the field for no limit")
            return None
        return float(value)

    def boolean(self, key: str) -> bool:
        value: Any = self.raw.get(key)  # absent and null (``key:`` in YAML) both mean omitted
        if value is None:
            return False
        if not isinstance(value, bool):
            self.error(key, f"expected true or false, got {_show(value)}")
            return False
        return value

    def strings(self, key: str, allowed: Collection[str] | None = None) -> tuple[str, ...]:
        value: Any = self.raw.get(key)  # absent and null (``key:`` in YAML) both mean omitted
        if value is None:
            return ()
        if not isinstance(value, list):
            self.error(key, f"expected a list of strings, got {_show(value)}")
            return ()
        out: list[str] = []
        for j, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.error(f"{key}[{j}]", f"expected a non-empty string, got {_show(item)}")
            elif allowed is not None and item not in allowed:
                self.error(f"{key}[{j}]", f"unknown value {item!r}; use one of {_list(allowed)}")
            elif item not in out:
                out.append(item)
        return tuple(out)

    def instant(self, key: str, end: bool) -> datetime | None:
        """A date or datetime as a UTC instant; a date ends at the end of its day when ``end``."""
        value: Any = self.raw.get(key)  # absent and null (``key:`` in YAML) both mean omitted
        if value is None:
            return None
        parsed: date | datetime | None = None
        if isinstance(value, date):  # YAML reads unquoted dates and timestamps itself
            parsed = value
        elif isinstance(value, str):
            try:
                parsed = (
                    date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
                )
            except ValueError:
                parsed = None
        if parsed is None:
            self.error(key, f"expected an ISO date or datetime (UTC), got {_show(value)}")
            return None
        if isinstance(parsed, datetime):
            return _utc(parsed)
        start = datetime.combine(parsed, time(), tzinfo=UTC)
        return start + timedelta(days=1) if end else start


def _parse_offer(
    source: str,
    i: int,
    item: object,
    tiers: tuple[str, ...],
    segments: Collection[str],
    stages: Collection[str],
    errors: list[str],
) -> Offer | None:
    if not isinstance(item, dict):
        errors.append(f"{source}: offers[{i}]: expected a mapping of fields, got {_show(item)}")
        return None
    raw_id = item.get("offer_id")
    label = f"({raw_id})" if isinstance(raw_id, str) and raw_id.strip() else "(no offer_id)"
    before = len(errors)
    f = _Fields(f"{source}: offers[{i}] {label}: ", item, errors)
    f.reject_unknown(_OFFER_KEYS)
    offer_id = f.string("offer_id", required=True, max_length=MAX_ID_LENGTH)
    if any(c.isspace() for c in offer_id):
        f.error("offer_id", f"{offer_id!r} contains whitespace")
    title = f.string("title", required=True)
    kind = f.string("kind", required=True)
    if kind and kind not in KINDS:
        f.error("kind", f"unknown kind {kind!r}; use one of {_list(KINDS)}")
    value = f.number("value")
    if kind in KINDS:
        value = _check_value(f, kind, value)
    cost = f.number("cost", required=True)
    worth = f.number("value_to_business", required=True)
    products = f.strings("products")
    categories = f.strings("categories")
    offer_segments = f.strings("segments", segments)
    offer_stages = f.strings("lifecycle_stages", stages)
    offer_tiers = tuple(t.casefold() for t in f.strings("tiers"))
    if tiers:
        for j, t in enumerate(offer_tiers):
            if t not in tiers:
                f.error(f"tiers[{j}]", f"unknown tier {t!r}; the catalog declares {_list(tiers)}")
    min_points = f.number("min_points", integer=True)
    first_purchase_only = f.boolean("first_purchase_only")
    birthday = f.number("birthday_window_days", integer=True)
    if birthday is not None and birthday > 183:
        f.error("birthday_window_days", f"{int(birthday)} days either side covers the whole year")
    surfaces = f.strings("surfaces", SURFACES)
    channels = tuple(c.casefold() for c in f.strings("channels"))
    valid_from = f.instant("valid_from", end=False)
    valid_until = f.instant("valid_until", end=True)
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        f.error(
            "valid_until",
            f"{item.get('valid_until')} is not after valid_from {item.get('valid_from')}",
        )
    max_redemptions = f.number("max_redemptions_per_customer", integer=True, positive=True)
    budget = f.number("budget", positive=True)
    max_impressions = f.number("max_impressions_per_day", integer=True, positive=True)
    reason = f.string("reason")
    if len(errors) > before:
        return None
    return Offer(
        offer_id=offer_id,
        title=title,
        kind=kind,
        value=value or 0.0,
        cost=cost or 0.0,
        value_to_business=worth or 0.0,
        products=products,
        categories=categories,
        segments=offer_segments,
        lifecycle_stages=offer_stages,
        tiers=offer_tiers,
        min_points=int(min_points or 0),
        first_purchase_only=first_purchase_only,
        birthday_window_days=None if birthday is None else int(birthday),
        surfaces=surfaces,
        channels=channels,
        valid_from=valid_from,
        valid_until=valid_until,
        max_redemptions_per_customer=_int_or_none(max_redemptions),
        budget=budget,
        max_impressions_per_day=_int_or_none(max_impressions),
        reason=reason,
    )


def _check_value(f: _Fields, kind: str, value: float | None) -> float:
    if value is None:
        if kind in ("free_shipping", "gift"):
            return 0.0
        if "value" not in f.raw or f.raw["value"] is None:
            f.error("value", f"missing; a {kind} offer needs the {KIND_VALUE[kind]}")
        return 0.0
    ok = {
        "percent_off": 0 < value <= 100,
        "amount_off": value > 0,
        "points_multiplier": value > 1,
        "free_shipping": True,
        "gift": True,
    }[kind]
    if not ok:
        f.error("value", f"{value:g} is out of range for {kind}: {KIND_VALUE[kind]}")
    return value


def _int_or_none(value: float | None) -> int | None:
    return None if value is None else int(value)


def _show(value: object) -> str:
    """A value as it appears in an error message: its type and a short repr."""
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def _list(values: Collection[str]) -> str:
    return ", ".join(values)


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are UTC; aware ones are converted to it."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# -- eligibility ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerState:
    """What the offer rules may know of a customer (from the feature store)."""

    customer_id: str
    known: bool = True
    segment: str = ""  # SEGMENTS; "" = not computed
    lifecycle_stage: str = ""  # LIFECYCLE_STAGES; "" = not computed (prospect if no purchase)
    tier: str = ""
    points: int = 0
    purchases: int = 0  # orders so far; first-purchase offers need 0
    birthday: date | None = None
    consent_personalization: bool = True
    top_categories: tuple[str, ...] = ()  # most bought first; for "you often buy coffee"

    @classmethod
    def prospect(cls, customer_id: str) -> CustomerState:
        """A customer we know nothing about."""
        return cls(customer_id, known=False, segment=PROSPECT, lifecycle_stage=PROSPECT)

    @property
    def personalized(self) -> bool:
        """Whether offers may be chosen from who this customer is."""
        return self.known and self.consent_personalization


@dataclass(frozen=True)
class OfferContext:
    now: datetime  # UTC (a naive datetime is taken as UTC)
    surface: str = ""  # SURFACES, or "" when the caller does not say
    channel: str = ""  # the device or channel, free text: ios, android, web...


NO_USAGE: Final = OfferUsage()


def rules_view(customer: CustomerState) -> CustomerState:
    """The customer as the rules may see them: a prospect unless known and consenting.

    The purchase count is kept for a consenting-or-not known customer: first-purchase-only
    is a term of the offer, not personalization.
    """
    if not customer.known:
        return CustomerState.prospect(customer.customer_id)
    if not customer.consent_personalization:
        return CustomerState(
            customer.customer_id,
            known=True,
            segment=PROSPECT,
            lifecycle_stage=PROSPECT,
            purchases=customer.purchases,
            consent_personalization=False,
        )
    if not customer.lifecycle_stage and customer.purchases == 0:
        return replace(customer, lifecycle_stage=PROSPECT)
    return customer


def eligible(
    offer: Offer,
    customer: CustomerState,
    context: OfferContext,
    usage: OfferUsage = NO_USAGE,
) -> str | None:
    """None when ``offer`` may be shown to ``customer`` now, else why not (for logs and tests)."""
    now = _utc(context.now)
    if offer.valid_from is not None and now < offer.valid_from:
        return f"not valid yet (from {offer.valid_from.isoformat()})"
    if offer.valid_until is not None and now >= offer.valid_until:
        return f"expired (valid until {offer.valid_until.isoformat()})"
    if offer.surfaces and context.surface not in offer.surfaces:
        shown = context.surface or "unspecified"
        return f"surface {shown} is not one of {_list(offer.surfaces)}"
    if offer.channels and context.channel.casefold() not in offer.channels:
        shown = context.channel or "unspecified"
        return f"channel {shown} is not one of {_list(offer.channels)}"
    if offer.budget is not None and usage.spent + offer.cost > offer.budget + 1e-9:
        return f"budget exhausted ({usage.spent:g} of {offer.budget:g} spent)"
    cap = offer.max_redemptions_per_customer
    if cap is not None and usage.redemptions >= cap:
        return f"already redeemed {usage.redemptions} times (cap {cap})"
    daily = offer.max_impressions_per_day
    if daily is not None and usage.impressions_today >= daily:
        return f"already shown {usage.impressions_today} times today (cap {daily})"
    view = rules_view(customer)
    as_seen = "" if customer.personalized else " (no personalization: treated as a prospect)"
    if offer.segments and view.segment not in offer.segments:
        return f"segment {view.segment or 'unknown'} is not one of {_list(offer.segments)}{as_seen}"
    if offer.lifecycle_stages and view.lifecycle_stage not in offer.lifecycle_stages:
        stage = view.lifecycle_stage or "unknown"
        return f"lifecycle stage {stage} is not one of {_list(offer.lifecycle_stages)}{as_seen}"
    if offer.tiers and view.tier.casefold() not in offer.tiers:
        return f"tier {view.tier or 'none'} is not one of {_list(offer.tiers)}{as_seen}"
    if offer.min_points and view.points < offer.min_points:
        return f"{view.points} points, fewer than the {offer.min_points} needed{as_seen}"
    if offer.first_purchase_only and view.purchases > 0:
        return f"first purchase only; the customer has {view.purchases} purchases"
    if offer.birthday_window_days is not None:
        if view.birthday is None:
            return f"no birthday on file{as_seen}"
        days = birthday_distance(view.birthday, now.date())
        if days > offer.birthday_window_days:
            return f"birthday is {days} days away (window {offer.birthday_window_days})"
    return None


def birthday_distance(birthday: date, today: date) -> int:
    """Days between ``today`` and the nearest anniversary of ``birthday`` (before or after,
    across New Year); a 29 February birthday falls on the 28th in other years."""
    best = 366
    for year in (today.year - 1, today.year, today.year + 1):
        day = birthday.day
        if birthday.month == 2 and day == 29 and not calendar.isleap(year):
            day = 28
        best = min(best, abs((date(year, birthday.month, day) - today).days))
    return best


# -- ranking -------------------------------------------------------------------------------


NO_STATS: Final = OfferStats()


@dataclass(frozen=True)
class OfferPolicy:
    """The ranking's knobs; the defaults are what the module docstring describes."""

    alpha0: float = 1.0  # Beta prior: mean 5% over 20 pseudo-impressions
    beta0: float = 19.0
    segment_prior_strength: float = 50.0  # pseudo-impressions of the overall rate per segment
    affinity_weight: float = 0.5  # logit change per standard deviation of affinity
    affinity_clip: float = 3.0
    match_weight: float = 0.5  # logit bonus of a targeted offer before it has data
    match_fade_impressions: float = 200.0  # ... halved after this many impressions
    affinity_reason_min: float = 0.5  # affinity z-score from which a category reason is given
    sample: bool = True  # Thompson draw; False = posterior mean (greedy)
    default_limit: int = 3  # limit 0 means this
    max_limit: int = 50


@dataclass(frozen=True)
class OfferChoice:
    offer_id: str
    title: str
    kind: str
    value: float
    expected_value: float  # probability x value_to_business
    probability: float  # of redemption if shown (the Thompson draw when sampling)
    reason: str


def recommend_offers(
    catalog: OfferCatalog,
    customer: CustomerState,
    context: OfferContext,
    usage_by_offer: Mapping[str, OfferUsage],
    stats_by_offer: Mapping[str, OfferStats],
    affinity_by_offer: Mapping[str, float],
    limit: int,
    rng: np.random.Generator,
    policy: OfferPolicy | None = None,
) -> list[OfferChoice]:
    """The eligible offers for ``customer``, best expected value first, at most ``limit``.

    Missing entries in the three mappings mean no usage, no observations and average affinity.
    The result is deterministic given the state of ``rng`` (one Beta draw per eligible offer,
    in catalog order).
    """
    policy = policy or OfferPolicy()
    if limit == 0:
        limit = policy.default_limit
    if not 1 <= limit <= policy.max_limit:
        raise InvalidRequest(f"limit {limit} is out of range; send 1..{policy.max_limit}")
    if context.surface and context.surface not in SURFACES:
        raise InvalidRequest(f"surface {context.surface!r} is unknown; use one of {SURFACES}")
    offers = [
        o
        for o in catalog.offers
        if eligible(o, customer, context, usage_by_offer.get(o.offer_id, NO_USAGE)) is None
    ]
    if not offers:
        return []
    personal = customer.personalized
    segment = customer.segment if personal else ""
    alpha = np.empty(len(offers))
    beta = np.empty(len(offers))
    for i, o in enumerate(offers):
        alpha[i], beta[i] = _posterior(stats_by_offer.get(o.offer_id, NO_STATS), segment, policy)
    theta = rng.beta(alpha, beta) if policy.sample else alpha / (alpha + beta)
    theta = np.clip(theta, 1e-9, 1 - 1e-9)
    logit = np.log(theta) - np.log1p(-theta)
    view = rules_view(customer)
    choices: list[OfferChoice] = []
    for i, o in enumerate(offers):
        affinity = affinity_by_offer.get(o.offer_id, 0.0) if personal else 0.0
        if not math.isfinite(affinity):
            affinity = 0.0
        clip = policy.affinity_clip
        lift = policy.affinity_weight * min(max(affinity, -clip), clip)
        if o.targeted:
            seen = stats_by_offer.get(o.offer_id, NO_STATS).impressions
            fade = policy.match_fade_impressions
            lift += policy.match_weight * fade / (fade + max(seen, 0))
        p = 1.0 / (1.0 + math.exp(-(float(logit[i]) + lift)))
        choices.append(
            OfferChoice(
                offer_id=o.offer_id,
                title=o.title,
                kind=o.kind,
                value=o.value,
                expected_value=p * o.value_to_business,
                probability=p,
                reason=offer_reason(o, view, affinity, policy.affinity_reason_min, customer),
            )
        )
    # Stable: equal expected values keep catalog order.
    choices.sort(key=lambda c: -c.expected_value)
    return choices[:limit]


def _posterior(stats: OfferStats, segment: str, policy: OfferPolicy) -> tuple[float, float]:
    """Beta parameters of the offer's redemption rate (for the segment when it has counts)."""
    n = max(stats.impressions, 0)
    r = min(max(stats.redemptions, 0), n)  # redemptions of impressions we never saw: capped
    a, b = policy.alpha0 + r, policy.beta0 + n - r
    seg = stats.by_segment.get(segment) if segment else None
    if seg is None or seg.impressions <= 0:
        return a, b
    # Shrink the segment's counts towards the overall rate (empirical Bayes).
    mean, k = a / (a + b), policy.segment_prior_strength
    n_s = seg.impressions
    r_s = min(max(seg.redemptions, 0), n_s)
    return k * mean + r_s, k * (1 - mean) + n_s - r_s


def offer_reason(
    offer: Offer,
    view: CustomerState,
    affinity: float,
    affinity_min: float,
    customer: CustomerState | None = None,
) -> str:
    """The reason shown with an offer: the most specific that is true of this customer.

    ``view`` is ``rules_view(customer)``; personal reasons need the full ``customer`` with
    consent (tier, birthday, categories), the welcome reason does not.
    """
    customer = customer or view
    personal = customer.personalized
    if personal and offer.birthday_window_days is not None:
        return "happy birthday"
    if offer.first_purchase_only or (
        view.lifecycle_stage in WELCOME_STAGES
        and WELCOME_STAGES.intersection(offer.lifecycle_stages)
    ):
        return "welcome offer"
    if personal and view.lifecycle_stage in WIN_BACK_STAGES and offer.lifecycle_stages:
        return "we miss you"
    if personal and offer.tiers and view.tier:
        return f"{view.tier.strip().title()} member"
    if personal and offer.categories:
        for category in customer.top_categories:
            if category in offer.categories:
                return f"you often buy {category}"
        if affinity >= affinity_min:
            return f"you might like {offer.categories[0]}"
    if personal and offer.products and affinity >= affinity_min:
        return "picked for you"
    return offer.reason or offer.title

"""The offer catalog: what an offer is, and reading and validating the catalog file.

The file format (YAML or JSON, version 1) is specified in docs/offers.md; examples/offers.yaml
is a sample.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from formats.errors import NotFound
from formats.ids import MAX_ID_LENGTH
from formats.loyalty import LIFECYCLE_STAGES, SEGMENTS, SURFACES
from recsvc.offers.fields import DocumentError, Fields, listing, read_document, show

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
    try:
        data, raw = read_document(path)
    except DocumentError as e:
        raise OfferCatalogError([str(e)]) from e
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
        errors.append(f"{source}: version: expected an integer, got {show(version)}")
    elif version not in SUPPORTED_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_VERSIONS))
        errors.append(f"{source}: version: {version} is not supported (supported: {supported})")
    if errors:  # a document of another version may mean anything: stop here
        raise OfferCatalogError(errors)
    top = Fields(f"{source}: ", data, errors)
    top.reject_unknown(_TOP_KEYS)
    tiers = tuple(t.casefold() for t in top.strings("tiers"))
    raw_offers = data.get("offers")
    offers: list[Offer] = []
    if "offers" not in data:
        errors.append(f"{source}: offers: missing; give a list of offers (may be empty)")
    elif not isinstance(raw_offers, list):
        errors.append(f"{source}: offers: expected a list, got {show(raw_offers)}")
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
        errors.append(f"{source}: offers[{i}]: expected a mapping of fields, got {show(item)}")
        return None
    raw_id = item.get("offer_id")
    label = f"({raw_id})" if isinstance(raw_id, str) and raw_id.strip() else "(no offer_id)"
    before = len(errors)
    f = Fields(f"{source}: offers[{i}] {label}: ", item, errors)
    f.reject_unknown(_OFFER_KEYS)
    offer_id = f.string("offer_id", required=True, max_length=MAX_ID_LENGTH)
    if any(c.isspace() for c in offer_id):
        f.error("offer_id", f"{offer_id!r} contains whitespace")
    title = f.string("title", required=True)
    kind = f.string("kind", required=True)
    if kind and kind not in KINDS:
        f.error("kind", f"unknown kind {kind!r}; use one of {listing(KINDS)}")
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
                f.error(f"tiers[{j}]", f"unknown tier {t!r}; the catalog declares {listing(tiers)}")
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


def _check_value(f: Fields, kind: str, value: float | None) -> float:
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

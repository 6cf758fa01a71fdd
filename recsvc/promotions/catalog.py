"""The promotions file: what a promotion is, and reading and validating the file (YAML or
JSON, version 1), every problem listed with its place (file, promotion, field).

Format (docs/promotions.md; examples/promotions.yaml is a sample)::

    version: 1
    promotions:
      - promotion_id: summer-shoes     # 1..128 characters, no whitespace, unique
        title: Summer shoes            # optional, for people and reports
        reason: Summer sale            # shown on the item (default "featured in <category>")
        categories: [shoes]            # the filter: every part given must hold
        products: [P1, P2]
        attributes: {brand: Acme, color: [red, blue], size: {min: 38, max: 42}}
        valid_from: 2026-06-01         # inclusive, UTC; a date starts at 00:00
        valid_until: 2026-09-01        # exclusive; a date ends at 24:00
        surfaces: [home]               # default: every surface
        share: 0.1                     # of RecommendProducts' slots, above 0 and at most 0.5
        # or: boost: 1.5               # multiplies the products' scores (above 0, not 1)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from formats.attributes import STANDARD_COLUMNS
from formats.ids import MAX_ID_LENGTH
from formats.loyalty import SURFACES
from formats.types import AttributeCondition
from recsvc.engine.slots import PromotionRule
from recsvc.offers.fields import (
    Fields,
    ListedErrors,
    document_version,
    entry,
    parse_items,
    read_document,
    show,
)

SUPPORTED_VERSIONS: Final = (1,)
MAX_SHARE: Final = 0.5  # promotions and exploration together take at most half of a list
MAX_REASON_LENGTH: Final = 200
_KEYS: Final = (
    "promotion_id",
    "title",
    "reason",
    "categories",
    "products",
    "attributes",
    "valid_from",
    "valid_until",
    "surfaces",
    "share",
    "boost",
)


class PromotionsError(ListedErrors):
    """The promotions file cannot be used; ``errors`` lists every problem, one a line."""


@dataclass(frozen=True)
class Promotion:
    promotion_id: str
    title: str = ""
    reason: str = ""
    categories: tuple[str, ...] = ()
    products: tuple[str, ...] = ()
    attributes: tuple[AttributeCondition, ...] = ()
    valid_from: datetime | None = None  # inclusive, UTC
    valid_until: datetime | None = None  # exclusive, UTC
    surfaces: tuple[str, ...] = ()  # empty = every surface
    share: float = 0.0
    boost: float = 1.0

    def live(self, now: datetime) -> bool:
        """Within its window at ``now``."""
        if self.valid_from is not None and now < self.valid_from:
            return False
        return self.valid_until is None or now < self.valid_until

    def shown_on(self, surface: str) -> bool:
        return not self.surfaces or surface in self.surfaces

    def rule(self) -> PromotionRule:
        return PromotionRule(
            promotion_id=self.promotion_id,
            categories=frozenset(self.categories),
            products=frozenset(self.products),
            attributes=self.attributes,
            share=self.share,
            boost=self.boost,
            reason=self.reason,
        )


@dataclass(frozen=True)
class PromotionCatalog:
    version: int
    promotions: tuple[Promotion, ...]
    source: str = ""
    digest: str = ""  # sha256 of the file's bytes

    def __len__(self) -> int:
        return len(self.promotions)

    def active(self, now: datetime, surface: str = "") -> tuple[PromotionRule, ...]:
        """Rules of the promotions within their window and shown on ``surface``, file order."""
        return tuple(p.rule() for p in self.promotions if p.live(now) and p.shown_on(surface))


def load_promotions(path: str | Path) -> PromotionCatalog:
    """Read and validate a promotions file; PromotionsError lists every problem."""
    path = Path(path)
    data, digest = read_document(path, PromotionsError)
    return parse_promotions(data, source=str(path), digest=digest)


def parse_promotions(
    data: object, source: str = "<promotions>", digest: str = ""
) -> PromotionCatalog:
    errors: list[str] = []
    data, version = document_version(
        data, source, SUPPORTED_VERSIONS, "promotions", PromotionsError
    )
    Fields(f"{source}: ", data, errors).reject_unknown(("version", "promotions"))
    promotions = parse_items(
        source,
        data,
        "promotions",
        "promotion_id",
        lambda i, item: _parse(source, i, item, errors),
        errors,
    )
    if errors:
        raise PromotionsError(errors)
    return PromotionCatalog(version, tuple(promotions), source, digest)


def _parse(source: str, i: int, item: object, errors: list[str]) -> Promotion | None:
    before = len(errors)
    found = entry(source, "promotions", "promotion_id", _KEYS, i, item, errors, MAX_ID_LENGTH)
    if found is None:
        return None
    f, promotion_id = found
    title = f.string("title")
    reason = f.string("reason", max_length=MAX_REASON_LENGTH)
    categories = f.strings("categories")
    products = f.strings("products")
    attributes = _attributes(f, f.raw.get("attributes"))
    if not (categories or products or attributes) and len(errors) == before:
        f.error("categories", "the promotion selects no products: give categories, products "
                "or attributes")  # fmt: skip
    valid_from, valid_until = f.window()
    surfaces = f.strings("surfaces", SURFACES)
    share = f.number("share", positive=True)
    boost = f.number("boost", positive=True)
    if (share is None) == (boost is None) and len(errors) == before:
        f.error("share", "give either share (of the slots) or boost (a score factor), not both")
    if share is not None and share > MAX_SHARE:
        f.error("share", f"{share:g} is above {MAX_SHARE}: promotions take at most half a list")
    if boost is not None and boost == 1.0:
        f.error("boost", "1 changes nothing; above 1 raises the products, below 1 lowers them")
    if len(errors) > before:
        return None
    return Promotion(
        promotion_id=promotion_id,
        title=title,
        reason=reason,
        categories=categories,
        products=products,
        attributes=attributes,
        valid_from=valid_from,
        valid_until=valid_until,
        surfaces=surfaces,
        share=share or 0.0,
        boost=boost or 1.0,
    )


def _attributes(f: Fields, raw: Any) -> tuple[AttributeCondition, ...]:
    """``{name: value | [values] | {min, max}}`` as conditions."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        f.error("attributes", f"expected a mapping of attribute names to values, got {show(raw)}")
        return ()
    out: list[AttributeCondition] = []
    for name, value in raw.items():
        key = f"attributes.{name}"
        if not isinstance(name, str) or not name.strip():
            f.error("attributes", f"attribute names are non-empty strings, got {show(name)}")
            continue
        if name in STANDARD_COLUMNS:
            f.error(key, f"{name} is not an attribute; use categories or products")
            continue
        if isinstance(value, bool) or value is None:
            f.error(key, f"expected a value, a list of values or {{min, max}}, got {show(value)}")
        elif isinstance(value, str | int | float):
            out.append(AttributeCondition(name, equals=_text(value)))
        elif isinstance(value, list):
            if not value or not all(isinstance(v, str | int | float) for v in value):
                f.error(key, f"expected a non-empty list of values, got {show(value)}")
            else:
                out.append(AttributeCondition(name, any_of=tuple(_text(v) for v in value)))
        elif isinstance(value, Mapping):
            bounds = Fields(f"{f.where}{key}.", value, f.errors)
            bounds.reject_unknown(("min", "max"))
            low, high = _bound(bounds, "min"), _bound(bounds, "max")
            if low is None and high is None:
                f.error(key, "give min, max or both")
            elif low is not None and high is not None and low > high:
                f.error(key, f"min {low:g} is above max {high:g}")
            else:
                out.append(AttributeCondition(name, min=low, max=high))
        else:
            f.error(key, f"expected a value, a list of values or {{min, max}}, got {show(value)}")
    return tuple(out)


def _bound(f: Fields, key: str) -> float | None:
    value = f.raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        f.error(key, f"expected a finite number, got {show(value)}")
        return None
    return float(value)


def _text(value: str | int | float) -> str:
    return value if isinstance(value, str) else f"{value:g}"

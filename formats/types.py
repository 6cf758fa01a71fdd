"""Plain request and response types of the serving core (no gRPC in here)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from formats.errors import InvalidRequest

# The prefix of a recommendation_id names the RPC that produced it, so campaign reports can
# attribute events to their source without a lookup table.
SOURCES = {
    "rp": "RecommendProducts",
    "sp": "SimilarProducts",
    "rk": "RankProducts",
    "of": "RecommendOffers",
    "tr": "TrendingProducts",
    "rb": "recommend-batch",  # `recsvc recommend-batch` (e.g. an email campaign)
}
# Where an item of a response came from (proto SlotKind, lower case without the prefix).
SLOTS = (
    "personalized",
    "exploration",
    "promotion",
    "popular",
    "trending",
    "content",
    "similar",
)
MAX_ATTRIBUTE_CONDITIONS = 32
MAX_ATTRIBUTE_VALUES = 1000  # values of one any_of condition


@dataclass(frozen=True)
class AttributeCondition:
    """One condition on a catalog attribute: ``equals``, ``any_of`` or a numeric range."""

    name: str
    equals: str | None = None
    any_of: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None

    @property
    def is_range(self) -> bool:
        return self.min is not None or self.max is not None

    @property
    def values(self) -> tuple[str, ...]:
        """The accepted values of an equals or any_of condition."""
        if self.equals is not None:
            return (self.equals,)
        return self.any_of or ()

    def check(self, i: int) -> None:
        where = f"filter.attributes[{i}]"
        if not self.name.strip():
            raise InvalidRequest(f"{where}: name is empty; name a catalog attribute")
        tests = sum((self.equals is not None, self.any_of is not None, self.is_range))
        if tests != 1:
            raise InvalidRequest(f"{where} ({self.name}): set exactly one of equals, any_of, range")
        if self.any_of is not None:
            if not self.any_of:
                raise InvalidRequest(f"{where} ({self.name}): any_of is empty")
            if len(self.any_of) > MAX_ATTRIBUTE_VALUES:
                raise InvalidRequest(
                    f"{where} ({self.name}): {len(self.any_of)} values; at most "
                    f"{MAX_ATTRIBUTE_VALUES}"
                )
        if self.min == -math.inf and self.max is None:
            raise InvalidRequest(f"{where} ({self.name}): range sets neither min nor max")
        for bound in ("min", "max"):
            value = getattr(self, bound)
            if value is not None and not math.isfinite(value):
                raise InvalidRequest(f"{where} ({self.name}): range.{bound} {value} is not finite")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise InvalidRequest(
                f"{where} ({self.name}): range.min {self.min:g} is above range.max "
                f"{self.max:g}; no product can match"
            )


@dataclass(frozen=True)
class Filter:
    include_categories: frozenset[str] = frozenset()
    exclude_categories: frozenset[str] = frozenset()
    exclude_product_ids: frozenset[str] = frozenset()
    in_stock_only: bool = False
    min_price: float | None = None
    max_price: float | None = None
    include_purchased: bool = False
    max_per_category: int = 0  # 0 = the server default
    attributes: tuple[AttributeCondition, ...] = ()

    def check(self) -> Filter:
        """This filter, or InvalidRequest saying why it cannot select anything sensibly."""
        for name in ("min_price", "max_price"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise InvalidRequest(f"filter.{name} {value} is not a finite price >= 0")
        low, high = self.min_price, self.max_price
        if low is not None and high is not None and low > high:
            raise InvalidRequest(
                f"filter.min_price {low:g} is above filter.max_price {high:g}; no product can match"
            )
        if self.max_per_category < 0:
            raise InvalidRequest(f"filter.max_per_category {self.max_per_category} is negative")
        if len(self.attributes) > MAX_ATTRIBUTE_CONDITIONS:
            raise InvalidRequest(
                f"{len(self.attributes)} filter.attributes; at most {MAX_ATTRIBUTE_CONDITIONS}"
            )
        for i, condition in enumerate(self.attributes):
            condition.check(i)
        return self


@dataclass(frozen=True)
class Context:
    surface: str = ""
    device: str = ""
    current_product_id: str = ""
    # This visit's products, oldest first: what a customer without history is recommended from.
    session_product_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Item:
    product_id: str
    score: float
    reason: str
    category: str
    slot: str = ""  # one of SLOTS
    promotion_id: str = ""  # the promotion that placed or boosted it


@dataclass(frozen=True)
class Recommendation:
    items: list[Item]
    model_version: str
    recommendation_id: str
    personalized: bool = False
    filled_from_popularity: int = 0  # items that had to come from the popularity fallback
    experiment: str = ""  # the experiment and arm that routed the call ("" = none)
    arm: str = ""
    next_page_token: str = ""  # RecommendProducts: continue this list ("" = no next page)


@dataclass(frozen=True)
class ModelInfo:
    version: str
    created_at: str
    customers: int
    products: int
    interactions: int
    metrics: dict[str, float] = field(default_factory=dict)
    index_kind: str = ""
    index_recall: float = 0.0
    loaded_at: str = ""


@dataclass(frozen=True)
class ProductChange:
    """A product's stock and price, and for products created or described live (UpdateProducts
    with a category, title or attributes) its definition."""

    product_id: str
    stock: int | None = None
    price: float | None = None
    title: str | None = None
    category: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)  # "" removes an attribute
    created_ms: int = 0  # read back: when the product was first described live (0 = never)

    @property
    def describes(self) -> bool:
        """Whether it carries a definition (title, category or attributes)."""
        return self.title is not None or self.category is not None or bool(self.attributes)


@dataclass(frozen=True)
class EventResult:
    event_id: str
    status: str  # "accepted" | "duplicate" | "rejected"
    reason: str = ""


@dataclass(frozen=True)
class CustomerProfile:
    customer_id: str
    known: bool
    segment: str = ""
    lifecycle_stage: str = ""
    tier: str = ""
    points: float = 0.0
    r_score: int = 0
    f_score: int = 0
    m_score: int = 0
    expected_purchases: float = 0.0
    clv: float = 0.0
    p_alive: float = 0.0
    churn_risk: float = 0.0
    top_categories: list[str] = field(default_factory=list)
    purchases: int = 0
    spend: float = 0.0
    consent_personalization: bool = True
    features_as_of: str = ""
    top_categories_model: list[str] = field(default_factory=list)

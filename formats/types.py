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
}


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


@dataclass(frozen=True)
class Recommendation:
    items: list[Item]
    model_version: str
    recommendation_id: str
    personalized: bool = False
    filled_from_popularity: int = 0  # items that had to come from the popularity fallback


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
    product_id: str
    stock: int | None = None
    price: float | None = None


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

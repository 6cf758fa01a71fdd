"""Plain request and response types of the serving core (no gRPC in here)."""

from __future__ import annotations

from dataclasses import dataclass, field

# The prefix of a recommendation_id names the RPC that produced it, so campaign reports can
# attribute events to their source without a lookup table.
SOURCES = {
    "rp": "RecommendProducts",
    "sp": "SimilarProducts",
    "rk": "RankProducts",
    "of": "RecommendOffers",
}


class InvalidRequest(ValueError):
    """The caller sent something the service cannot answer; the message says what to fix."""


class NotFound(LookupError):
    """The request names something that does not exist (for example an unknown product)."""


class Unavailable(RuntimeError):
    """The service cannot answer right now (no model loaded yet)."""


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


@dataclass(frozen=True)
class Context:
    surface: str = ""
    device: str = ""
    current_product_id: str = ""


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

"""Promotions: products placed in a share of RecommendProducts' slots, or boosted, while a
promotion is within its window and on the request's surface.

- ``catalog``: ``Promotion``, ``PromotionCatalog``, reading and validating the file
- ``service``: ``PromotionService``: the file in use, reloads, active rules, served records

The file format and the slot rules: docs/promotions.md.
"""

from recsvc.promotions.catalog import (
    MAX_SHARE,
    SUPPORTED_VERSIONS,
    Promotion,
    PromotionCatalog,
    PromotionsError,
    load_promotions,
    parse_promotions,
)
from recsvc.promotions.service import PromotionService

__all__ = [
    "MAX_SHARE",
    "SUPPORTED_VERSIONS",
    "Promotion",
    "PromotionCatalog",
    "PromotionService",
    "PromotionsError",
    "load_promotions",
    "parse_promotions",
]

"""Personalized offers: the offer catalog, eligibility, and expected-value ranking.

No gRPC and no Redis in here: the caller reads what the customer has used of each offer
(``feature_store.offer_usage.OfferUsage``), what has been observed of each offer
(``OfferStats``) and the customer's affinity to each offer's targets (from the model vectors),
and passes them in as plain data.

- ``catalog``: ``Offer``, ``OfferCatalog``, reading and validating the catalog file
  (``fields``: the typed reads it is validated with)
- ``eligibility``: ``CustomerState``, ``OfferContext``, ``eligible`` (None or why not)
- ``ranking``: ``OfferPolicy``, ``recommend_offers`` (Thompson sampling), ``offer_reason``

The catalog file format, the ranking formula and how unknown and non-consenting customers
are treated: docs/offers.md.
"""

from recsvc.offers.catalog import (
    KIND_VALUE,
    KINDS,
    SUPPORTED_VERSIONS,
    Offer,
    OfferCatalog,
    OfferCatalogError,
    check_targets,
    load_catalog,
    parse_catalog,
)
from recsvc.offers.eligibility import (
    NO_USAGE,
    CustomerState,
    OfferContext,
    birthday_distance,
    eligible,
    rules_view,
)
from recsvc.offers.ranking import (
    NO_STATS,
    OfferChoice,
    OfferPolicy,
    offer_reason,
    recommend_offers,
)

__all__ = [
    "KINDS",
    "KIND_VALUE",
    "NO_STATS",
    "NO_USAGE",
    "SUPPORTED_VERSIONS",
    "CustomerState",
    "Offer",
    "OfferCatalog",
    "OfferCatalogError",
    "OfferChoice",
    "OfferContext",
    "OfferPolicy",
    "birthday_distance",
    "check_targets",
    "eligible",
    "load_catalog",
    "offer_reason",
    "parse_catalog",
    "recommend_offers",
    "rules_view",
]

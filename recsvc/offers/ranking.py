"""Offer ranking: the eligible offers by expected value, each with the reason shown with it.

Expected value = P(redemption) x ``value_to_business``, P from a Thompson draw of the offer's
Beta posterior, the customer's affinity to its targets and a fading bonus for targeted offers;
docs/offers.md gives the formula.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

from feature_store.offer_usage import OfferStats, OfferUsage
from formats.errors import InvalidRequest
from formats.loyalty import SURFACES, WELCOME_STAGES, WIN_BACK_STAGES
from recsvc.offers.catalog import Offer, OfferCatalog
from recsvc.offers.eligibility import NO_USAGE, CustomerState, OfferContext, eligible, rules_view

NO_STATS: Final = OfferStats()


@dataclass(frozen=True)
class OfferPolicy:
    """The ranking's knobs; the defaults are what docs/offers.md describes."""

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

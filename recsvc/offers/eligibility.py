"""Offer eligibility: whether an offer may be shown to a customer now, and if not, why.

The rules see a customer through ``rules_view``: a prospect unless known and consenting to
personalization (docs/offers.md, "Unknown customers and consent").
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Final

from feature_store.offer_usage import OfferUsage
from formats.loyalty import PROSPECT
from recsvc.offers.catalog import Offer
from recsvc.offers.fields import as_utc, listing


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
    now = as_utc(context.now)
    if offer.valid_from is not None and now < offer.valid_from:
        return f"not valid yet (from {offer.valid_from.isoformat()})"
    if offer.valid_until is not None and now >= offer.valid_until:
        return f"expired (valid until {offer.valid_until.isoformat()})"
    if offer.surfaces and context.surface not in offer.surfaces:
        shown = context.surface or "unspecified"
        return f"surface {shown} is not one of {listing(offer.surfaces)}"
    if offer.channels and context.channel.casefold() not in offer.channels:
        shown = context.channel or "unspecified"
        return f"channel {shown} is not one of {listing(offer.channels)}"
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
        return (
            f"segment {view.segment or 'unknown'} is not one of {listing(offer.segments)}{as_seen}"
        )
    if offer.lifecycle_stages and view.lifecycle_stage not in offer.lifecycle_stages:
        stage = view.lifecycle_stage or "unknown"
        return f"lifecycle stage {stage} is not one of {listing(offer.lifecycle_stages)}{as_seen}"
    if offer.tiers and view.tier.casefold() not in offer.tiers:
        return f"tier {view.tier or 'none'} is not one of {listing(offer.tiers)}{as_seen}"
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

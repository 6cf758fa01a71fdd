"""Customer standing and data-protection requests: the gRPC-free core behind
GetCustomerProfile, SetLoyalty, ForgetCustomer and ExportCustomerData.

Everything here reads or writes the feature store; when it cannot be reached these calls
fail with Unavailable (unlike recommendations, they have nothing else to answer from).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from feature_store import loyalty_balances, privacy
from feature_store.store import Activity, FeatureStore
from formats.errors import InvalidRequest, Unavailable
from formats.ids import check_id
from formats.limits import MAX_POINTS
from formats.types import CustomerProfile

T = TypeVar("T")
MAX_TIER_LENGTH = 64


def _number(profile: dict[str, Any], name: str) -> float:
    value = profile.get(name)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0


def to_profile(customer_id: str, activity: Activity) -> CustomerProfile:
    """Loaded features, then what happened since (purchases, spend, tier and points)."""
    p = activity.profile or {}
    known = activity.profile is not None or bool(activity.counters) or bool(activity.loyalty)
    spend = _number(p, "spend") + float(activity.counters.get("spend", 0.0))
    return CustomerProfile(
        customer_id=customer_id,
        known=known,
        segment=str(p.get("segment") or ""),
        lifecycle_stage=str(
            p.get("lifecycle_stage") or ("prospect" if known and activity.purchases == 0 else "")
        ),
        tier=activity.tier or "",
        points=activity.points,
        r_score=int(_number(p, "r_score")),
        f_score=int(_number(p, "f_score")),
        m_score=int(_number(p, "m_score")),
        expected_purchases=_number(p, "expected_purchases"),
        clv=_number(p, "clv"),
        p_alive=_number(p, "p_alive"),
        churn_risk=_number(p, "churn_risk"),
        top_categories=[str(c) for c in (p.get("top_categories") or [])],
        purchases=activity.purchases,
        spend=spend,
        consent_personalization=activity.consent,
        features_as_of=str(p.get("as_of") or ""),
        top_categories_model=[str(c) for c in (p.get("top_categories_model") or [])],
    )


class Customers:
    def __init__(self, store: FeatureStore | None, offer_ids: Callable[[], list[str]]) -> None:
        self.store = store
        self.offer_ids = offer_ids  # the current offer catalog's ids (usage lives per offer)

    def _call(self, fn: Callable[[FeatureStore], T]) -> T:
        if self.store is None:
            raise Unavailable("no feature store is configured (REDIS_URL)")
        try:
            return fn(self.store)
        except RedisError as exc:
            raise Unavailable(f"the feature store cannot be reached ({exc}); retry") from None

    def profile(self, customer_id: str) -> CustomerProfile:
        check_id(customer_id, "customer_id")
        return to_profile(customer_id, self._call(lambda s: s.activity(customer_id)))

    def set_loyalty(
        self,
        customer_id: str,
        tier: str | None = None,
        points: float | None = None,
        delta: float | None = None,
    ) -> tuple[str, float]:
        check_id(customer_id, "customer_id")
        if tier is None and points is None and delta is None:
            raise InvalidRequest("set tier, points or points_delta")
        if points is not None and delta is not None:
            raise InvalidRequest("send points (a new balance) or points_delta, not both")
        if tier is not None and not (0 < len(tier.strip()) <= MAX_TIER_LENGTH):
            raise InvalidRequest(f"tier must be 1..{MAX_TIER_LENGTH} characters")
        for name, value in (("points", points), ("points_delta", delta)):
            if value is not None and not math.isfinite(value):
                raise InvalidRequest(f"{name} {value} is not a finite number")
            if value is not None and abs(value) > MAX_POINTS:
                raise InvalidRequest(f"{name} {value:g} is beyond the limit of {MAX_POINTS:g}")
        if points is not None and points < 0:
            raise InvalidRequest(f"points {points} is negative; a balance is >= 0")
        return self._call(
            lambda s: loyalty_balances.set_loyalty(s, customer_id, tier, points, delta)
        )

    def forget(self, customer_id: str) -> privacy.ForgetReport:
        check_id(customer_id, "customer_id")
        return self._call(lambda s: privacy.forget(s, customer_id, self.offer_ids()))

    def export(self, customer_id: str) -> str:
        check_id(customer_id, "customer_id")
        data = self._call(lambda s: privacy.export_customer(s, customer_id, self.offer_ids()))
        return privacy.dumps(data)

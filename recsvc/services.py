"""The services of ``recsvc.v1`` and the token scope each one needs: health checking,
reflection and auth all read this one list. Also what the ``public`` scope (a token that
lives in a web page) may do."""

from __future__ import annotations

from recsvc.v1 import recommender_pb2 as pb

# Every service the proto defines, by full name (health reports each; reflection lists each).
SERVICES: tuple[str, ...] = tuple(s.full_name for s in pb.DESCRIPTOR.services_by_name.values())
# Scope each service needs; services not listed (health, reflection) are open.
SCOPE_BY_SERVICE: dict[str, str] = {
    "recsvc.v1.Recommender": "recommend",
    "recsvc.v1.Events": "events",
    "recsvc.v1.Admin": "admin",
    "recsvc.v1.Privacy": "privacy",
}
assert set(SCOPE_BY_SERVICE) == set(SERVICES), "a service without a scope would be open"

# `public`: for tokens that must live in a web page, so anyone can read them. It grants the
# read RPCs of Recommender (a new Recommender RPC is public unless listed below) and
# TrackEvents of the events a page reports; nothing that moves money or reads a customer's
# standing. Calls it grants also pass the per-client-address rate limit.
PUBLIC = "public"
PUBLIC_SERVICE = "recsvc.v1.Recommender"
NOT_PUBLIC_METHODS = frozenset({"recsvc.v1.Recommender/GetCustomerProfile"})
PUBLIC_TRACKING = "recsvc.v1.Events/TrackEvents"
# Events a browser page reports. Offer impressions and clicks are in: the page that shows
# RecommendOffers (public) must report them for frequency caps and the offer ranking to
# learn. Purchases (spend, loyalty) and offer redemptions (budgets) are not.
PUBLIC_EVENT_TYPES = frozenset(
    {
        "view",
        "click",
        "add_to_cart",
        "rec_impression",
        "rec_click",
        "offer_impression",
        "offer_click",
    }
)
SCOPES: tuple[str, ...] = (*SCOPE_BY_SERVICE.values(), PUBLIC)


def public_may_call(method: str) -> bool:
    """Whether the `public` scope grants ``method`` ("/package.Service/Method")."""
    name = method.lstrip("/")
    service = name.partition("/")[0]
    if service == PUBLIC_SERVICE:
        return name not in NOT_PUBLIC_METHODS
    return name == PUBLIC_TRACKING

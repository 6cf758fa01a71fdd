"""The services of ``recsvc.v1`` and the token scope each one needs: health checking,
reflection and auth all read this one list."""

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
SCOPES: tuple[str, ...] = tuple(SCOPE_BY_SERVICE.values())
assert set(SCOPE_BY_SERVICE) == set(SERVICES), "a service without a scope would be open"

"""Id rules shared by every id that reaches an event, a Redis key or a bundle."""

from __future__ import annotations

from typing import Final

from formats.errors import InvalidRequest

# Event, customer, product, offer and recommendation ids all end up in Redis keys and event
# records; one limit keeps them all storable.
MAX_ID_LENGTH: Final = 128


def id_problem(value: str, what: str, limit: int = MAX_ID_LENGTH) -> str | None:
    """Why ``value`` is not a usable id, or None."""
    if not value.strip():
        return f"{what} is empty"
    if len(value) > limit:
        return f"{what} is {len(value)} characters long; the maximum is {limit}"
    return None


def check_id(value: str, what: str, limit: int = MAX_ID_LENGTH) -> str:
    """``value`` when it is a usable id; InvalidRequest saying why otherwise."""
    problem = id_problem(value, what, limit)
    if problem:
        raise InvalidRequest(problem)
    return value

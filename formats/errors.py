"""The errors a person can act on: every command prints them in one line and exits 2, every
RPC maps them to a status code. Anything else is a bug and keeps its traceback."""

from __future__ import annotations


class RecsvcError(Exception):
    """A failure whose message says what is wrong and what to do about it."""


class InvalidRequest(RecsvcError, ValueError):
    """The caller sent something the service cannot answer; the message says what to fix."""


class NotFound(RecsvcError, LookupError):
    """The request names something that does not exist (for example an unknown product)."""


class Unavailable(RecsvcError, RuntimeError):
    """The service cannot answer right now (no model loaded yet, or its store is down)."""


class LimitReached(RecsvcError, RuntimeError):
    """A bounded store is full (for example products described live); the message says how
    to make room."""

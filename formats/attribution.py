"""The recommendation_id format: which RPC answered, and under which experiment arm.

``<source>-<32 hex>`` (a random UUID), or ``<source>-<32 hex>-<experiment>.<arm>`` when an
experiment routed the call. ``source`` is a key of ``formats.types.SOURCES``; experiment and
arm names are ``NAME`` (letters, digits, ``_`` and ``-``, at most 40 characters), so the whole
id stays within the 128 characters an event's recommendation_id may have. Ids without the
experiment part (all ids before experiments existed) parse with empty experiment and arm.
Events carry the id back, so reports attribute them without a lookup.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
_ID = re.compile(r"([a-z]+)-([0-9a-f]{32})(?:-([A-Za-z0-9_-]{1,40})\.([A-Za-z0-9_-]{1,40}))?")


@dataclass(frozen=True)
class Attribution:
    source: str  # "rp", "sp", ... ("" when the id is not one of ours)
    experiment: str = ""
    arm: str = ""


def new_id(source: str, experiment: str = "", arm: str = "") -> str:
    rid = f"{source}-{uuid.uuid4().hex}"
    return with_arm(rid, experiment, arm)


def with_arm(recommendation_id: str, experiment: str, arm: str) -> str:
    """``recommendation_id`` tagged with an experiment arm (unchanged without one)."""
    if not experiment:
        return recommendation_id
    if not (NAME.fullmatch(experiment) and NAME.fullmatch(arm)):
        raise ValueError(f"experiment {experiment!r} / arm {arm!r}: not valid names")
    return f"{recommendation_id}-{experiment}.{arm}"


def parse(recommendation_id: str) -> Attribution:
    m = _ID.fullmatch(recommendation_id)
    if m is None:
        return Attribution("")
    return Attribution(m.group(1), m.group(3) or "", m.group(4) or "")


# The same parse for polars (``recsvc report``): capture groups of one regex.
PATTERN = _ID.pattern

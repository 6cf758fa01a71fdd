"""Typed reads from one mapping of a configuration document (the offer catalog, the
experiments file), and reading such a document from its YAML or JSON file.

Every problem is recorded with its place (file, offer, field) instead of raised, so one pass
over a catalog reports all of them. Also the two spellings the offer modules share: a list of
names in a message, and an instant as UTC.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml


class DocumentError(ValueError):
    """A file that is not a readable YAML or JSON document; the message says where and why."""


def read_document(path: Path) -> tuple[object, bytes]:
    """The parsed document of a .yaml/.yml/.json file, and the file's bytes (for a digest)."""
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise DocumentError(f"{path}: unsupported extension {suffix!r}; use .yaml or .json")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DocumentError(f"{path}: cannot read: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DocumentError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    if suffix == ".json":
        try:
            return json.loads(text), raw
        except json.JSONDecodeError as e:
            raise DocumentError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from e
    try:
        return yaml.safe_load(text), raw
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise DocumentError(f"{where}: invalid YAML: {problem}") from e


class Fields:
    """Typed reads from one mapping; every problem is appended to ``errors`` with its place."""

    def __init__(self, where: str, raw: Mapping[str, Any], errors: list[str]) -> None:
        self.where = where  # e.g. "offers.yaml: offers[3] (coffee-10): "
        self.raw = raw
        self.errors = errors

    def error(self, key: str, problem: str) -> None:
        self.errors.append(f"{self.where}{key}: {problem}")

    def reject_unknown(self, allowed: Sequence[str]) -> None:
        for key in self.raw:
            if key in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.error(str(key), f"unknown field{hint} (known: {', '.join(allowed)})")

    def string(self, key: str, required: bool = False, max_length: int = 0) -> str:
        value: Any = self.raw.get(key)  # absent and null (``key:`` in YAML) both mean omitted
        if value is None:
            if required:
                self.error(key, "missing")
            return ""
        if not isinstance(value, str):
            self.error(key, f"expected a string, got {show(value)}")
            return ""
        if required and not value.strip():
            self.error(key, "is empty")
        if max_length and len(value) > max_length:
            self.error(key, f"is {len(value)} characters long; the maximum is {max_length}")
        return value

    def number(
        self,
        key: str,
        required: bool = False,
        integer: bool = False,
        positive: bool = False,
    ) -> float | None:
        """A finite number >= 0 (> 0 with ``positive``); None when absent and not required."""
        value: Any = self.raw.get(key)  # absent and null (``key:`` in YAML) both mean omitted
        if value is None:
            if required:
                self.error(key, "missing")
            return None
        # bool is an int in Python; true/false here is a mistake, not 1/0.
        wrong = not isinstance(value, int) if integer else not isinstance(value, int | float)
        if isinstance(value, bool) or wrong:
            expected = "an integer" if integer else "a number"
            self.error(key, f"expected {expected}, got {show(value)}")
            return None
        if not math.isfinite(value):
            self.error(key, f"expected a finite number, got {value}")
            return None
        if value < 0:
            self.error(key, f"must not be negative, got {value}")
            return None
        if positive and value == 0:
            self.error(key, "must be above 0; omit the field for no limit")
            return None
        return float(value)

    def boolean(self, key: str) -> bool:
        value: Any = self.raw.get(key)  # absent and null (``key:`` in YAML) both mean omitted
        if value is None:
            return False
        if not isinstance(value, bool):
            self.error(key, f"expected true or false, got {show(value)}")
            return False
        return value

    def strings(self, key: str, allowed: Collection[str] | None = None) -> tuple[str, ...]:
        value: Any = self.raw.get(key)  # absent and null (``key:`` in YAML) both mean omitted
        if value is None:
            return ()
        if not isinstance(value, list):
            self.error(key, f"expected a list of strings, got {show(value)}")
            return ()
        out: list[str] = []
        for j, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.error(f"{key}[{j}]", f"expected a non-empty string, got {show(item)}")
            elif allowed is not None and item not in allowed:
                self.error(f"{key}[{j}]", f"unknown value {item!r}; use one of {listing(allowed)}")
            elif item not in out:
                out.append(item)
        return tuple(out)

    def instant(self, key: str, end: bool) -> datetime | None:
        """A date or datetime as a UTC instant; a date ends at the end of its day when ``end``."""
        value: Any = self.raw.get(key)  # absent and null (``key:`` in YAML) both mean omitted
        if value is None:
            return None
        parsed: date | datetime | None = None
        if isinstance(value, date):  # YAML reads unquoted dates and timestamps itself
            parsed = value
        elif isinstance(value, str):
            try:
                parsed = (
                    date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
                )
            except ValueError:
                parsed = None
        if parsed is None:
            self.error(key, f"expected an ISO date or datetime (UTC), got {show(value)}")
            return None
        if isinstance(parsed, datetime):
            return as_utc(parsed)
        start = datetime.combine(parsed, time(), tzinfo=UTC)
        return start + timedelta(days=1) if end else start


def show(value: object) -> str:
    """A value as it appears in an error message: its type and a short repr."""
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def listing(values: Collection[str]) -> str:
    return ", ".join(values)


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are UTC; aware ones are converted to it."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)

"""Typed reads from one mapping of a configuration document (the offer catalog, promotions,
the experiments file), and reading such a document from its YAML or JSON file.

Every problem is recorded with its place (file, offer, field) instead of raised, so one pass
over a catalog reports all of them. Also the two spellings the offer modules share: a list of
names in a message, and an instant as UTC.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml

_MAX_LISTED_ERRORS = 50
T = TypeVar("T")


class ListedErrors(ValueError):
    """A document that cannot be used; ``errors`` lists every problem found, one a line."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        shown = self.errors[:_MAX_LISTED_ERRORS]
        more = len(self.errors) - len(shown)
        super().__init__("\n".join(shown) + (f"\n... and {more} more" if more > 0 else ""))


def document_version(
    data: object,
    source: str,
    supported: Sequence[int],
    items: str,
    fail: Callable[[list[str]], Exception],
    what: str = "file",
) -> tuple[dict[str, Any], int]:
    """The document as a mapping and its version; ``fail`` when it is not a mapping or its
    version is missing or unsupported (a document of another version may mean anything)."""
    if not isinstance(data, dict):
        raise fail([f"{source}: the {what} must be a mapping with 'version' and '{items}'"])
    version = data.get("version")
    errors = []
    if "version" not in data:
        errors.append(f"{source}: version: missing; this reader supports version 1")
    elif isinstance(version, bool) or not isinstance(version, int):
        errors.append(f"{source}: version: expected an integer, got {show(version)}")
    elif version not in supported:
        listed = ", ".join(map(str, supported))
        errors.append(f"{source}: version: {version} is not supported (supported: {listed})")
    if errors:
        raise fail(errors)
    assert isinstance(version, int)
    return data, version


def parse_items(
    source: str,
    data: Mapping[str, Any],
    items: str,
    id_key: str,
    parse: Callable[[int, object], T | None],
    errors: list[str],
) -> list[T]:
    """The list ``data[items]``, each entry parsed (None: invalid, its problems recorded);
    duplicate ids are found on the raw id, so even among invalid entries."""
    raw = data.get(items)
    if items not in data:
        errors.append(f"{source}: {items}: missing; give a list of {items} (may be empty)")
        return []
    if not isinstance(raw, list):
        errors.append(f"{source}: {items}: expected a list, got {show(raw)}")
        return []
    out: list[T] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        parsed = parse(i, item)
        raw_id = item.get(id_key) if isinstance(item, dict) else None
        if isinstance(raw_id, str) and raw_id.strip():
            if raw_id in seen:
                errors.append(
                    f"{source}: {items}[{i}] ({raw_id}): {id_key}: duplicate of "
                    f"{items}[{seen[raw_id]}]"
                )
                continue
            seen[raw_id] = i
        if parsed is not None:
            out.append(parsed)
    return out


def entry(
    source: str,
    items: str,
    id_key: str,
    keys: Sequence[str],
    i: int,
    item: object,
    errors: list[str],
    max_id_length: int,
) -> tuple[Fields, str] | None:
    """Entry ``i`` of a document's list as Fields (unknown keys rejected) and its id (required,
    at most ``max_id_length`` characters, no whitespace); None when it is not a mapping."""
    if not isinstance(item, dict):
        errors.append(f"{source}: {items}[{i}]: expected a mapping of fields, got {show(item)}")
        return None
    raw_id = item.get(id_key)
    label = f"({raw_id})" if isinstance(raw_id, str) and raw_id.strip() else f"(no {id_key})"
    f = Fields(f"{source}: {items}[{i}] {label}: ", item, errors)
    f.reject_unknown(keys)
    item_id = f.string(id_key, required=True, max_length=max_id_length)
    if any(c.isspace() for c in item_id):
        f.error(id_key, f"{item_id!r} contains whitespace")
    return f, item_id


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

    def window(self) -> tuple[datetime | None, datetime | None]:
        """``valid_from`` (inclusive) and ``valid_until`` (exclusive), the second after the
        first."""
        start = self.instant("valid_from", end=False)
        until = self.instant("valid_until", end=True)
        if start is not None and until is not None and until <= start:
            shown_until, shown_from = self.raw.get("valid_until"), self.raw.get("valid_from")
            self.error("valid_until", f"{shown_until} is not after valid_from {shown_from}")
        return start, until

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


def read_document(path: Path, fail: Callable[[list[str]], Exception]) -> tuple[object, str]:
    """A YAML or JSON file (by extension) parsed, and the SHA-256 of its bytes; ``fail`` makes
    the exception to raise from a list of problems (file and line, what is wrong)."""
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise fail([f"{path}: unsupported extension {suffix!r}; use .yaml or .json"])
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise fail([f"{path}: cannot read: {e.strerror or e}"]) from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail([f"{path}: not UTF-8 text ({e.reason} at byte {e.start})"]) from e
    data: object
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise fail([f"{path}:{e.lineno}: invalid JSON: {e.msg}"]) from e
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problem = getattr(e, "problem", None) or str(e)
            raise fail([f"{where}: invalid YAML: {problem}"]) from e
    return data, hashlib.sha256(raw).hexdigest()


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

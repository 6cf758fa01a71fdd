"""Hypothesis strategies for any protobuf message, built from its descriptor: every field set
or not, strings from empty to a megabyte (unicode, ids of the world, ids at and over the
length limit), numbers at their extremes (NaN, infinities, 1e308, 2^63-1), any enum value
(known or not), timestamps inside and outside their valid range, repeated fields empty, small,
and at and over the per-call limits.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

# Names the server knows, so generated requests also reach the paths behind validation.
KNOWN_STRINGS = (
    "C0000001",
    "C0000002",
    "P000001",
    "P000002",
    "welcome-10",
    "vip-gift",
    "gold",
    "20260101T000000Z-served",
    "electronics",
)
ODD_STRINGS = (
    "",
    " ",
    "\t\n",
    "\x00",
    "../x",
    "/etc/passwd",
    "a" * 128,
    "a" * 129,
    "\u202e\u0000\ufeff",
    "😀" * 64,
    "' OR 1=1 --",
    "{c:1}:v1:*",  # looks like a key of ours
    "%s%n%x",
)
BIG_LENGTHS = (1_000, 65_536, 1_000_000)
# Per-call limits of docs/api.md (events, product ids, updates), and one past each.
LIST_LENGTHS = (500, 501, 1000, 1001)
DOUBLES = (
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    1e9,
    1e9 + 1,
    1e12 + 1,
    1e308,
    -1e308,
    5e-324,
    float(2**63 - 1),
    float(2**53 + 1),
    math.inf,
    -math.inf,
    math.nan,
)
INT_EDGES = (0, 1, -1, 2**31 - 1, -(2**31), 2**32 - 1, 2**63 - 1, -(2**63), 2**64 - 1)

F = FieldDescriptor


def strings(big: bool) -> st.SearchStrategy[str]:
    options = [  # ids the server knows weigh most: past validation is where bugs hide
        st.sampled_from(KNOWN_STRINGS),
        st.sampled_from(KNOWN_STRINGS),
        st.sampled_from(KNOWN_STRINGS),
        st.sampled_from(ODD_STRINGS),
        st.text(max_size=40),
        st.text(alphabet=st.characters(codec="ascii"), min_size=120, max_size=140),
    ]
    if big:
        options.append(
            st.builds(
                lambda c, n: c * n, st.characters(codec="utf-8"), st.sampled_from(BIG_LENGTHS)
            )
        )
    return st.one_of(options)


def _integers(bits: int, signed: bool) -> st.SearchStrategy[int]:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    edges = [v for v in INT_EDGES if low <= v <= high]
    small = st.integers(max(low, -5), 300)  # where the valid values of counts and limits lie
    return st.one_of(st.sampled_from(edges), st.integers(low, high), small)


def scalars(field: FieldDescriptor, big: bool) -> st.SearchStrategy[Any]:
    t = field.type
    if t == F.TYPE_STRING:
        return strings(big)
    if t == F.TYPE_BYTES:
        return st.binary(max_size=100)
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t == F.TYPE_DOUBLE:
        plausible = st.floats(0, 1000, allow_nan=False)
        return st.one_of(plausible, plausible, st.sampled_from(DOUBLES), st.floats())
    if t == F.TYPE_FLOAT:
        return st.floats(width=32)
    if t == F.TYPE_ENUM:
        assert field.enum_type is not None
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), _integers(32, True))  # proto3 enums are open
    if t in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
        return _integers(32, True)
    if t in (F.TYPE_UINT32, F.TYPE_FIXED32):
        if field.name == "limit":
            return st.one_of(st.integers(0, 60), st.sampled_from([199, 200, 201, 1000]))
        return _integers(32, False)
    if t in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
        return _integers(64, True)
    if t in (F.TYPE_UINT64, F.TYPE_FIXED64):
        return _integers(64, False)
    raise AssertionError(f"no strategy for field type {t} of {field.full_name}")


def _timestamps() -> st.SearchStrategy[tuple[int, int]]:
    """(seconds, nanos): valid times around now, the edges of the valid range, and beyond."""
    valid = st.tuples(st.integers(946_684_800, 2_000_000_000), st.integers(0, 999_999_999))
    edges = st.tuples(
        st.sampled_from([253_402_300_799, 253_402_300_800, -62_135_596_800, -62_135_596_801, 0]),
        st.sampled_from([0, 999_999_999, 1_000_000_000, -1]),
    )
    anything = st.tuples(_integers(64, True), _integers(32, True))
    return st.one_of(valid, edges, anything)


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor, depth: int = 0, big: bool = True) -> Any:
    """A message of ``descriptor``'s type with a random selection of fields set."""
    message: Message = GetMessageClass(descriptor)()
    if descriptor.full_name == "google.protobuf.Timestamp":
        seconds, nanos = draw(_timestamps())
        message.seconds, message.nanos = seconds, nanos  # type: ignore[attr-defined]
        return message
    for field in descriptor.fields:
        if not draw(st.integers(0, 3)):
            continue  # unset (proto3: the default), one time in four
        if field.is_repeated:
            n = draw(st.one_of(st.integers(0, 3), st.sampled_from(LIST_LENGTHS)))
            # A few random elements, repeated to the drawn length: long lists stay cheap.
            kind = field.message_type
            if kind is not None and kind.GetOptions().map_entry:
                # map<K, V>: n entries with drawn keys and values (keys may repeat).
                key, value = kind.fields_by_name["key"], kind.fields_by_name["value"]
                target_map = getattr(message, field.name)
                for _ in range(min(n, 50)):
                    k = draw(scalars(key, big=False))
                    if value.message_type is not None:
                        target_map[k].CopyFrom(
                            draw(messages(value.message_type, depth + 1, big=False))
                        )
                    else:
                        target_map[k] = draw(scalars(value, big=False))
            elif field.type == F.TYPE_MESSAGE:
                if depth >= 3:
                    continue
                assert kind is not None
                some = [draw(messages(kind, depth + 1, big=False)) for _ in range(min(n, 3))]
                target = getattr(message, field.name)
                for i in range(n):
                    target.add().CopyFrom(some[i % len(some)])
            else:
                values = [draw(scalars(field, big=False)) for _ in range(min(n, 3))]
                getattr(message, field.name).extend(values[i % len(values)] for i in range(n))
        elif field.type == F.TYPE_MESSAGE:
            if depth >= 3:
                continue
            assert field.message_type is not None
            sub = draw(messages(field.message_type, depth + 1, big=big))
            getattr(message, field.name).CopyFrom(sub)
        else:
            setattr(message, field.name, draw(scalars(field, big)))
    return message

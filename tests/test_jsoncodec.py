"""recsvc.web.jsoncodec against protobuf's json_format, the reference: the same JSON for every
message type of recsvc.v1 (random messages, edge values included), the same messages from
JSON, and the same refusals."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from recsvc.v1 import recommender_pb2 as pb
from recsvc.web import jsoncodec

F = FieldDescriptor
MESSAGES = sorted(pb.DESCRIPTOR.message_types_by_name.values(), key=lambda d: d.full_name)
INTS = {
    F.CPPTYPE_INT32: [0, 1, -1, 2**31 - 1, -(2**31)],
    F.CPPTYPE_UINT32: [0, 1, 2**32 - 1],
    F.CPPTYPE_INT64: [0, -1, 2**53 + 1, 2**63 - 1, -(2**63)],
    F.CPPTYPE_UINT64: [0, 7, 2**64 - 1],
}
FLOATS = [0.0, -0.0, 1.5, 0.1, 1e-40, 3.4e38, -2.5e-7, math.inf, -math.inf, math.nan]
STRINGS = ["", "C0000001", "é ü 漢字 🎉", 'quote " and \\ slash', "a\nb"]


def scalar(field: Any, rng: random.Random) -> Any:  # a FieldDescriptor
    cpp = field.cpp_type
    if cpp == F.CPPTYPE_STRING:
        if field.type == F.TYPE_BYTES:
            return rng.choice([b"", b"\x00\xff", b"x" * rng.randint(1, 9)])
        return rng.choice(STRINGS)
    if cpp == F.CPPTYPE_BOOL:
        return rng.random() < 0.5
    if cpp in INTS:
        return rng.choice(INTS[cpp] + [rng.randint(0, 1000)])
    if cpp in (F.CPPTYPE_DOUBLE, F.CPPTYPE_FLOAT):
        return rng.choice([*FLOATS, rng.uniform(-1e6, 1e6), rng.random()])
    assert cpp == F.CPPTYPE_ENUM and field.enum_type is not None
    return rng.choice([v.number for v in field.enum_type.values] + [77])  # 77: unknown value


def fill(message: Message, rng: random.Random, depth: int = 0) -> Message:
    for field in message.DESCRIPTOR.fields:
        if rng.random() < 0.3:
            continue  # left unset
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            mapping = getattr(message, field.name)
            for _ in range(rng.randint(0, 3)):
                mapping[rng.choice(STRINGS)] = scalar(value_field, rng)
        elif field.message_type is not None:
            if depth > 2:
                continue
            if field.message_type.full_name == "google.protobuf.Timestamp":
                target = (
                    getattr(message, field.name).add()
                    if field.is_repeated
                    else getattr(message, field.name)
                )
                target.FromMilliseconds(rng.randint(0, 2_000_000_000_000))
            elif field.is_repeated:
                for _ in range(rng.randint(0, 3)):
                    fill(getattr(message, field.name).add(), rng, depth + 1)
            else:
                getattr(message, field.name).SetInParent()
                fill(getattr(message, field.name), rng, depth + 1)
        elif field.is_repeated:
            getattr(message, field.name).extend(
                [scalar(field, rng) for _ in range(rng.randint(0, 3))]
            )
        else:
            setattr(message, field.name, scalar(field, rng))
    return message


def message_class(descriptor: Descriptor) -> type[Message]:
    return GetMessageClass(descriptor)


@pytest.mark.parametrize("descriptor", MESSAGES, ids=lambda d: d.name)
def test_encoding_is_json_formats(descriptor: Descriptor) -> None:
    rng = random.Random(descriptor.full_name)
    cls = message_class(descriptor)
    for _ in range(60):
        message = fill(cls(), rng)
        ours = jsoncodec.encoder(descriptor)(message)
        reference = json_format.MessageToDict(message)
        assert json.dumps(ours, sort_keys=True) == json.dumps(reference, sort_keys=True)
        assert json.loads(jsoncodec.to_json(message)) == json.loads(json.dumps(reference))


@pytest.mark.parametrize("descriptor", MESSAGES, ids=lambda d: d.name)
def test_parsing_reads_back_what_json_format_writes(descriptor: Descriptor) -> None:
    rng = random.Random("parse" + descriptor.full_name)
    cls = message_class(descriptor)
    for _ in range(60):
        message = fill(cls(), rng)
        for proto_names in (False, True):
            text = json_format.MessageToJson(message, preserving_proto_field_name=proto_names)
            reference = json_format.Parse(text, cls(), ignore_unknown_fields=True)
            assert jsoncodec.parse(text.encode(), cls) == reference


def reference(body: bytes, cls: type[Message]) -> Message | None:
    """json_format's reading of ``body``, None when it refuses."""
    try:
        return json_format.Parse(body or b"{}", cls(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError):
        return None


REQUESTS = [
    b"",
    b"{}",
    b'{"customerId": "C1", "limit": 20}',
    b'{"customer_id": "C1", "limit": 0}',
    b'{"limit": -1}',
    b'{"limit": 4294967296}',
    b'{"limit": true}',
    b'{"limit": 1.0}',
    b'{"limit": 1.5}',
    b'{"limit": "5"}',
    b'{"limit": null}',
    b'{"customerId": 5}',
    b'{"customerId": "a", "customer_id": "b"}',
    b'{"customerId": "C1", "somethingNew": {"x": [1, 2]}}',
    b'{"filter": []}',
    b'{"filter": {}}',
    b'{"filter": null}',
    b'{"filter": {"minPrice": 1e300, "maxPrice": -0.0}}',
    b'{"filter": {"minPrice": "NaN"}}',
    b'{"filter": {"includeCategories": ["a", "b"], "inStockOnly": true}}',
    b'{"filter": {"includeCategories": "a"}}',
    b'{"filter": {"includeCategories": ["a", 1]}}',
    b'{"filter": {"maxPerCategory": 3}}',
    b'{"context": {"surface": "SURFACE_CART", "device": "web"}}',
    b'{"context": {"surface": "NOPE"}}',
    b'{"context": {"surface": 2}}',
    b"[1, 2]",
    b'"text"',
    b"{not json",
    b'{"customerId": "C1"} trailing',
]
EVENTS = [
    b'{"events": [{"eventId": "e1", "customerId": "c", "type": "EVENT_TYPE_VIEW",'
    b' "productId": "P1", "timestamp": "2026-01-01T00:00:00Z", "quantity": 2}]}',
    b'{"events": [{"type": "EVENT_TYPE_PURCHASE", "amount": 9.5}, {"type": 4}]}',
    b'{"events": [{"timestamp": "yesterday"}]}',
    b'{"events": [{"quantity": 3.5e38}]}',
    b'{"events": {}}',
    b'{"events": [null]}',
]


@pytest.mark.parametrize(
    ("cls", "body"),
    [(pb.RecommendProductsRequest, b) for b in REQUESTS]
    + [(pb.TrackEventsRequest, b) for b in EVENTS],
)
def test_requests_read_as_json_format_reads_them(cls: type[Message], body: bytes) -> None:
    expected = reference(body, cls)
    if expected is None:
        with pytest.raises(jsoncodec.JsonError):
            jsoncodec.parse(body, cls)
    else:
        got = jsoncodec.parse(body, cls)
        assert got == expected
        for field in ("filter", "context"):  # a message given as {} is present
            if field in cls.DESCRIPTOR.fields_by_name:
                assert got.HasField(field) == expected.HasField(field)

"""Reload signals: a reload on one worker of one replica reaches every worker of every replica.

ReloadModel, ReloadOffers (and any later reload RPC) run on the one worker that answered;
it then announces the reload here, and every worker polls the signals about once a second
and repeats the reload when a topic's sequence number moved. Polling one small hash (not
pub/sub) means a worker that was busy, restarting or cut off from Redis for a moment still
sees the latest signal of each topic when it looks again.

Key (docs/feature-store.md): ``Keys.reload_signals``, a HASH with two fields per topic:
``<topic>:seq`` (an integer, HINCRBY) and ``<topic>`` (JSON: the topic's payload, when and by
whom). Topics in use: ``model`` ({"version"}), ``offers`` ({"catalog_version"}); new reload
RPCs add their own.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from feature_store.store import FeatureStore, as_text

# KEYS[1] the signals hash; ARGV: topic, JSON. Returns the topic's new sequence number.
_ANNOUNCE = """
local seq = redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':seq', 1)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return seq
"""


@dataclass(frozen=True)
class Signal:
    topic: str
    seq: int
    payload: dict[str, Any]
    at_ms: int = 0
    origin: str = ""  # host:pid of the worker that announced it


def announce(store: FeatureStore, topic: str, payload: dict[str, Any]) -> int:
    """Tell every worker that ``topic`` was reloaded; returns the topic's new sequence."""
    if not topic or ":" in topic:
        raise ValueError(f"bad topic {topic!r}")
    body = {
        "payload": payload,
        "at_ms": int(time.time() * 1000),
        "origin": f"{socket.gethostname()}:{os.getpid()}",
    }
    script = store.script(_ANNOUNCE)
    return int(script(keys=[store.keys.reload_signals], args=[topic, json.dumps(body)]))


def signals(store: FeatureStore) -> dict[str, Signal]:
    """The latest signal of every topic (one HGETALL on the reader)."""
    raw = {
        as_text(k): as_text(v) for k, v in store.reader.hgetall(store.keys.reload_signals).items()
    }
    found = {}
    for name, value in raw.items():
        topic, sep, tail = name.rpartition(":")
        if not sep or tail != "seq" or topic not in raw:
            continue
        body = json.loads(raw[topic])
        found[topic] = Signal(
            topic,
            int(value),
            dict(body.get("payload") or {}),
            body.get("at_ms", 0),
            body.get("origin", ""),
        )
    return found

"""The arithmetic of bench.serve_rpcs (mostly its report module) and its profile split (the
benchmark itself needs a server and minutes: `make bench-serve`)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest

from bench.harness import split_load
from bench.harness.profile import (
    BACKGROUND,
    ENGINE,
    GRPC,
    INTERCEPTORS,
    LOGGING,
    PARTS,
    REDIS,
    SERVICER,
    collapsed,
    part_of,
    split_samples,
)
from bench.serve_rpcs import Rpc, phases_for
from bench.serve_rpcs_report import (
    HEALTH_NAME,
    LevelRow,
    SeqRow,
    goals,
    level_table,
    outage_spans,
    outages,
    overlap_s,
    profiled,
    sequential_rows,
    sequential_table,
)

POOL = "_worker (concurrent/futures/thread.py:83);_unary_response_in_pool (grpc/_server.py:788)"
HANDLER = f"{POOL};timed (recsvc/interceptors.py:120);RecommendProducts (recsvc/servicer.py:183)"


def level(rpc: str, concurrency: int, rate: float, health: float) -> LevelRow:
    return LevelRow(rpc, concurrency, rate, 2.0, 9.0, health, 1.0, 4.0, 1.0, 0.5, 0.9, {})


def test_sequential_ratio_is_the_health_median_over_the_rpc_median() -> None:
    rows = sequential_rows(
        {HEALTH_NAME: np.array([1.0, 1.0, 3.0]), "Slow": np.array([4.0, 5.0, 4.0])},
        {"Slow": "20 items (50/50)"},
        {"Slow": {"UNAVAILABLE": 2}},
    )
    assert [(r.rpc, r.calls, r.p50_ms) for r in rows] == [(HEALTH_NAME, 3, 1.0), ("Slow", 3, 4.0)]
    assert rows[0].ratio == 1.0
    assert rows[1].ratio == 0.25
    table = sequential_table(rows)
    assert "| Slow (2 errors: {'UNAVAILABLE': 2}) | 20 items (50/50) | 3 | 4.000 |" in table
    assert "| 0.25 | not met |" in table


def test_goals_need_the_sequential_ratio_and_both_busy_levels() -> None:
    seq = [SeqRow(HEALTH_NAME, 9, 1.0, 1.0, 1.0), SeqRow("A", 9, 1.5, 2.0, 2 / 3)]
    seq.append(SeqRow("B", 9, 1.5, 2.0, 2 / 3))
    levels = [
        level("A", 1, 100, 1000),  # concurrency 1 is reported, not a goal
        level("A", 8, 600, 1000),
        level("A", 32, 500, 1000),
        level("B", 8, 600, 1000),
        level("B", 32, 499, 1000),
    ]
    lines = goals(seq, levels)
    assert lines[0].startswith("- A: all goals met")
    assert lines[1].startswith("- B: NOT all met")
    assert "c=32 0.50 not met" in lines[1]
    table = level_table(levels)
    assert "| A | 1 | 100 | 1,000 | 0.10 | (not a goal) |" in table
    assert "| B | 32 | 499 | 1,000 | 0.50 | not met |" in table


def test_load_is_spread_over_the_generators_with_a_connection_each_at_least() -> None:
    assert split_load(1, 2, 16) == [(1, 1)]
    assert split_load(8, 1, 16) == [(8, 8)]
    assert split_load(32, 1, 16) == [(32, 16)]
    assert split_load(5, 2, 16) == [(3, 3), (2, 2)]


def test_a_stack_belongs_to_its_innermost_project_frame_unless_a_library_says_more() -> None:
    redis_read = f"{HANDLER};activity (feature_store/store.py:470);execute (redis/client.py:1)"
    engine = f"{HANDLER};recommend (recsvc/engine/core.py:148);unique (numpy/lib/x.py:1)"
    log_line = f"{POOL};timed (recsvc/interceptors.py:130);emit (logging/__init__.py:1)"
    auth = f"{POOL};intercept (recsvc/interceptors.py:80);check (recsvc/auth.py:40)"
    wait = "_bootstrap (threading.py:1002);_serve (grpc/_server.py:1314)"
    lines = [f"thread (0x7f);{s} {n}" for s, n in ((redis_read, 5), (engine, 3), (wait, 7))]
    lines += [f"{log_line} 2", f"{auth} 1", f"{HANDLER} 4", "garbage", f"{HANDLER} x"]
    poll = "loop (recsvc/health.py:59);poll (feature_store/x.py:1);hgetall (redis/core.py:1)"
    main = "_worker (recsvc/server.py:352);wait_for_termination (grpc/_server.py:1485)"
    health = f"{POOL};timed (recsvc/interceptors.py:120);Check (grpc_health/v1/health.py:9)"
    lines += [f"{poll} 3", f"{main} 6", f"{health} 1"]
    stacks = collapsed(lines)
    assert [part_of(f) for f, _ in stacks] == [
        *(REDIS, ENGINE, GRPC, LOGGING, INTERCEPTORS, SERVICER),
        *(BACKGROUND, GRPC, GRPC),
    ]
    split = split_samples(stacks)
    assert set(split.samples) == set(PARTS)
    assert split.total == 32
    assert split.share(GRPC) == 14 / 32
    in_requests = split_samples(stacks, within="_unary_response_in_pool")
    assert in_requests.total == 16
    assert in_requests.samples[GRPC] == 1


def test_outages_and_the_calls_answered_without_redis_come_from_the_server_log() -> None:
    log = "\n".join(
        [
            '{"msg":"serving model v1"}',
            '{"msg":"feature store unavailable (Timeout reading from x): serving from the model"}',
            '{"msg":"feature store back after 1.0 s; 12 calls were answered without it"}',
            '{"msg":"feature store unavailable (Timeout): serving from the model alone"}',
            '{"msg":"feature store back after 0.5 s; 3 calls were answered without it"}',
        ]
    )
    assert outages(log) == (2, 15)
    assert outages('{"msg":"serving model v1"}') == (0, 0)


def test_outage_spans_end_with_the_back_line_and_count_inside_a_window() -> None:
    def line(ts: str, msg: str, pid: int) -> str:
        return json.dumps({"ts": f"2026-11-30T08:37:{ts}+00:00", "msg": msg, "pid": pid})

    log = "\n".join(
        [
            line("16.000", "feature store unavailable (Timeout): serving from the model", 1),
            line("16.500", "feature store unavailable (Timeout): serving from the model", 2),
            '{"ts":"2026-11-30T08:37:16.600+00:00","msg":"RecommendProducts","pid":1}',
            line("17.000", "feature store back after 1.0 s; 314 calls were answered", 1),
        ]
    )
    t0 = datetime(2026, 11, 30, 8, 37, 16, tzinfo=UTC).timestamp()
    spans = outage_spans(log)
    assert spans == [(t0, t0 + 1.0), (t0 + 0.5, math.inf)]
    assert overlap_s(spans, t0 + 0.5, t0 + 2.0) == 0.5 + 1.5
    assert overlap_s(spans, t0 - 5, t0 - 1) == 0.0


def test_profiled_rpcs_are_picked_by_their_first_word() -> None:
    names = [HEALTH_NAME, "RecommendProducts", "RankProducts (100 ids)"]
    assert profiled(names, "all") == names
    assert profiled(names, "RankProducts, health") == [HEALTH_NAME, "RankProducts (100 ids)"]
    with pytest.raises(SystemExit, match="Nope"):
        profiled(names, "Nope")


def test_each_rpc_alternates_with_health_in_turns_that_pool_by_name() -> None:
    rpcs = [Rpc(HEALTH_NAME, "/h", [b""], None), Rpc("A", "/a", [b"a"], None)]
    phases = phases_for(rpcs, start=100.0, warmup=1.0, seconds=4.0, rounds=2)
    assert [p.name for p in phases] == [f"{HEALTH_NAME} before A", "A"] * 2
    assert [p.method for p in phases] == ["/h", "/a", "/h", "/a"]
    assert [p.seconds for p in phases] == [2.0] * 4
    assert [p.warmup for p in phases] == [1.0, 1.0, 0.3, 0.3]
    assert phases[1].start == phases[0].window[1] + 0.2  # back to back, on one schedule
    assert phases[3].window[1] == 100.0 + 2 * (1.0 + 2.0 + 0.2) + 0.3 + 2.0 + 0.2 + 0.3 + 2.0

"""The figures of bench.serve_rpcs, from what it measured: ratios to the empty RPC, the
goals of issue 13, feature-store outages read from the server's log, the profile tables, and
the report. Plain functions of plain data (tests/test_bench_serve_rpcs.py)."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from bench.harness import Catalog, Pooled, fmt, machine, pct, today
from bench.harness.profile import PARTS, VIEWS, Split

HEALTH_NAME = "health Check"
GOAL = 0.5  # issue 13: within 2x of the empty RPC
OFFERS = Path("examples/offers.yaml")  # the offer catalog the server is given


def outages(server_log: str) -> tuple[int, int]:
    """(feature-store outages, calls answered without it) that a server's log reports: a
    serving read slower than RECSVC_REDIS_TIMEOUT_MS starts an outage, and until Redis
    answers again the RPCs skip it (cheaper than with it, so the ratios would flatter)."""
    started = server_log.count("feature store unavailable")
    without = sum(int(n) for n in re.findall(r"(\d+) calls were answered without it", server_log))
    return started, without


def outage_spans(server_log: str) -> list[tuple[float, float]]:
    """(start, end) Unix times of each worker's feature-store outages in a server's JSON
    log: an outage ends with the "back after X s" line; one still on ends at infinity."""
    spans: list[tuple[float, float]] = []
    open_since: dict[str, float] = {}
    for line in server_log.splitlines():
        if '"feature store ' not in line:
            continue
        record = json.loads(line)
        ts = datetime.fromisoformat(record["ts"]).timestamp()
        pid = str(record.get("pid"))
        if record["msg"].startswith("feature store unavailable"):
            open_since[pid] = ts
        elif (back := re.match(r"feature store back after ([\d.]+) s", record["msg"])) is not None:
            open_since.pop(pid, None)
            spans.append((ts - float(back.group(1)), ts))
    spans.extend((since, math.inf) for since in open_since.values())
    return spans


def overlap_s(spans: list[tuple[float, float]], begin: float, end: float) -> float:
    """Seconds of ``spans`` inside [begin, end), summed (two workers down at once: twice)."""
    return sum(max(0.0, min(b, end) - max(a, begin)) for a, b in spans)


def most_common(values: list[str]) -> str:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    top = max(counts, key=lambda v: counts[v]) if counts else ""
    return f"{top} ({counts[top]}/{len(values)})" if counts else ""


@dataclass(frozen=True)
class SeqRow:
    rpc: str
    calls: int
    p50_ms: float
    p90_ms: float
    ratio: float  # median(health) / median(rpc)
    answers: str = ""
    errors: dict[str, int] = field(default_factory=dict)


def sequential_rows(
    latencies_ms: dict[str, np.ndarray],
    carried: dict[str, str] | None = None,
    errors: dict[str, dict[str, int]] | None = None,
) -> list[SeqRow]:
    """One row per RPC (health first), each with median(health) / its median."""
    health = pct(latencies_ms[HEALTH_NAME], 50)
    rows = []
    for name, lat in latencies_ms.items():
        p50 = pct(lat, 50)
        answers = (carried or {}).get(name, "")
        failed = (errors or {}).get(name, {})
        rows.append(SeqRow(name, len(lat), p50, pct(lat, 90), health / p50, answers, failed))
    return rows


def sequential_table(rows: list[SeqRow]) -> str:
    lines = [
        "| RPC | answers carry | calls | p50 ms | p90 ms | ratio median(health)/median(RPC) "
        f"| goal >= {GOAL} |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        goal = "" if r.rpc == HEALTH_NAME else verdict(r.ratio)
        errors = f" ({sum(r.errors.values())} errors: {r.errors})" if r.errors else ""
        lines.append(
            f"| {r.rpc}{errors} | {r.answers} | {r.calls:,} | {fmt(r.p50_ms, 3)} "
            f"| {fmt(r.p90_ms, 3)} | {fmt(r.ratio)} | {goal} |"
        )
    return "\n".join(lines)


def verdict(ratio: float) -> str:
    return "n/a" if math.isnan(ratio) else ("met" if ratio >= GOAL else "not met")


@dataclass(frozen=True)
class LevelRow:
    rpc: str
    concurrency: int
    calls_per_s: float
    p50_ms: float
    p99_ms: float
    health_calls_per_s: float
    health_p50_ms: float
    health_p99_ms: float
    server_cpu_ms: float  # per call: recsvc's processes and the embedded redis-server
    health_server_cpu_ms: float
    host_busy: float  # share of all cores busy in the RPC's window, anyone's work
    errors: dict[str, int]
    without_redis_s: float = 0.0  # worker-seconds of feature-store outage in the RPC's window

    @property
    def ratio(self) -> float:
        return self.calls_per_s / self.health_calls_per_s if self.health_calls_per_s else math.nan


def level_row(rpc: str, concurrency: int, p: Pooled, h: Pooled) -> LevelRow:
    """The RPC's window beside the health window just before it."""
    errors = {f"{code}": n for code, n in p.errors.items()}
    errors |= {f"health {code}": n for code, n in h.errors.items()}
    return LevelRow(
        rpc=rpc,
        concurrency=concurrency,
        calls_per_s=p.rate,
        p50_ms=pct(p.latencies_ms, 50),
        p99_ms=pct(p.latencies_ms, 99),
        health_calls_per_s=h.rate,
        health_p50_ms=pct(h.latencies_ms, 50),
        health_p99_ms=pct(h.latencies_ms, 99),
        server_cpu_ms=p.per_call_ms(p.server_cpu_s),
        health_server_cpu_ms=h.per_call_ms(h.server_cpu_s),
        host_busy=p.host_busy,
        errors=errors,
    )


def level_table(rows: list[LevelRow]) -> str:
    lines = [
        "| RPC | concurrency | calls/s | health calls/s | ratio RPC/health "
        f"| goal >= {GOAL} | p50 ms | health p50 ms | p99 ms | health p99 ms "
        "| server CPU ms/call (recsvc + redis-server) | health server CPU ms/call | host CPU busy "
        "| worker-s without Redis in the RPC's window |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        errors = f" ({sum(r.errors.values())} errors: {r.errors})" if r.errors else ""
        goal = verdict(r.ratio) if r.concurrency > 1 else "(not a goal)"
        lines.append(
            f"| {r.rpc}{errors} | {r.concurrency} | {r.calls_per_s:,.0f} "
            f"| {r.health_calls_per_s:,.0f} | {fmt(r.ratio)} | {goal} | {fmt(r.p50_ms)} "
            f"| {fmt(r.health_p50_ms)} | {fmt(r.p99_ms)} | {fmt(r.health_p99_ms)} "
            f"| {fmt(r.server_cpu_ms, 3)} | {fmt(r.health_server_cpu_ms, 3)} "
            f"| {r.host_busy:.0%} | {r.without_redis_s:.1f} |"
        )
    return "\n".join(lines)


def goals(seq: list[SeqRow], levels: list[LevelRow]) -> list[str]:
    """One line per RPC: which of its goals are met (sequential, concurrency 8 and 32)."""
    out = []
    for s in (r for r in seq if r.rpc != HEALTH_NAME):
        parts = [f"sequential {fmt(s.ratio)} {verdict(s.ratio)}"]
        for lv in levels:
            if lv.rpc == s.rpc and lv.concurrency in (8, 32):
                parts.append(f"c={lv.concurrency} {fmt(lv.ratio)} {verdict(lv.ratio)}")
        met = all(p.endswith(" met") and not p.endswith("not met") for p in parts)
        out.append(f"- {s.rpc}: {'all goals met' if met else 'NOT all met'} ({'; '.join(parts)})")
    return out


@dataclass(frozen=True)
class Profile:
    rpc: str
    concurrency: int
    pid: int
    seconds: float
    calls_per_s: float
    views: dict[str, Split]  # bench.harness.profile.VIEWS
    commands: list[str]


def profiled(names: list[str], wanted: str) -> list[str]:
    """The RPC names ``wanted`` picks ("all", or first words such as "RecommendProducts,
    health"), in ``names``' order."""
    if wanted.strip() == "all":
        return names
    words = {w.strip() for w in wanted.split(",") if w.strip()}
    unknown = words - {n.split(" ")[0] for n in names}
    if unknown:
        raise SystemExit(f"--profile-rpcs: unknown {sorted(unknown)}")
    return [n for n in names if n.split(" ")[0] in words]


def profile_table(profiles: list[Profile], view: str) -> str:
    """Rows: parts of the serving path; columns: the profiled RPCs; one view."""
    heads = [f"{p.rpc} ({p.calls_per_s:,.0f} calls/s)" for p in profiles]
    lines = [f"| {view} | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for part in PARTS:
        cells = " | ".join(f"{p.views[view].share(part):.1%}" for p in profiles)
        lines.append(f"| {part} | {cells} |")
    totals = " | ".join(f"{p.views[view].total:,}" for p in profiles)
    lines.append(f"| samples | {totals} |")
    return "\n".join(lines)


@dataclass
class CatalogRun:
    catalog: Catalog
    features_s: float
    ready_s: float
    sequential: list[SeqRow]
    levels: list[LevelRow]
    profiles: list[Profile]
    outages: dict[str, tuple[int, int]]  # per stage: (outages started, calls without Redis)


def render(
    args: argparse.Namespace,
    runs: list[CatalogRun],
    command: str,
    elapsed: float,
    loadavg: tuple[tuple[float, ...], tuple[float, ...]],
) -> str:
    before, after = (", ".join(f"{x:.2f}" for x in la) for la in loadavg)
    lines = [
        f"## Serving cost per RPC against the empty RPC ({today()})",
        "",
        f"- machine: {machine()}",
        f"- command: `{command}` ({elapsed / 60:.1f} min)",
        f"- host load average (1, 5, 15 min): {before} before, {after} after",
        f"- server: `recsvc serve --workers {args.workers or os.cpu_count()}`, auth on, "
        "embedded Redis with the world's features bulk-loaded (`recsvc features load`), "
        f"RECSVC_OFFERS={OFFERS}, request log to a file",
        f"- sequential: one sync gRPC channel in the benchmark's process, {args.calls:,} "
        f"interleaved rounds (order rotated each round) after {args.warmup_calls} warm-up "
        "rounds; ratio = median(health) / median(RPC)",
        f"- concurrency: {args.clients} load generator process(es), grpc.aio closed loop, up "
        f"to {args.channels} TCP connections; per RPC {args.rounds} turns of a health window "
        f"then the RPC's window on the same connections ({args.seconds / args.rounds:g} s each, "
        f"{args.seconds:g} s per RPC pooled; {args.warmup:g} s warm-up before the first turn, "
        f"{min(args.warmup, 0.3):g} s before the others); ratio = RPC calls/s / health calls/s",
    ]
    for run in runs:
        c = run.catalog
        lines += [
            "",
            f"### {c.label}: {c.products:,} products, {c.customers:,} customers, index {c.index}"
            + (f", serving {serving}" if (serving := c.manifest.get("serving")) else ""),
            "",
            f"Features loaded in {run.features_s:.0f} s; server ready in {run.ready_s:.0f} s. "
            "Feature-store outages (a serving read slower than RECSVC_REDIS_TIMEOUT_MS; the "
            "calls until Redis answers again skip it): "
            + "; ".join(
                f"{k}: {n} ({calls} calls without it)" for k, (n, calls) in run.outages.items()
            )
            + ".",
            "",
            "Sequential:",
            "",
            sequential_table(run.sequential),
            "",
            "Concurrency:",
            "",
            level_table(run.levels),
            "",
            "Goals (ratio >= 0.5 sequential and at concurrency 8 and 32):",
            "",
            *goals(run.sequential, run.levels),
        ]
        if run.profiles:
            lines += [
                "",
                f"Profile of one server worker, each RPC at concurrency 8 for "
                f"{run.profiles[0].seconds:g} s, one py-spy process per view at once (stacks in "
                f"{args.out}/profile-*.txt; the calls/s are both workers' while py-spy runs). "
                "active: its threads the OS has running or runnable; GIL: the thread holding the "
                "GIL; wall: every sample of its threads while they run a request, waits for "
                f"Redis, the GIL and the network included. The commands, for "
                f"{run.profiles[0].rpc}:",
                "",
                *(f"    {c}" for c in run.profiles[0].commands),
            ]
            for view in VIEWS:
                lines += ["", profile_table(run.profiles, view)]
    return "\n".join(lines)

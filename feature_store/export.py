"""`recsvc events export`: the event stream to Parquet files partitioned by day, crash-safe.

Layout: ``OUT/day=YYYY-MM-DD/part-<first>-<last>.parquet`` (stream ids of the chunk, with
``-`` in ids written as ``_``) and ``OUT/_checkpoint.json``, the last stream id whose events
are durably in files. One round per chunk:

1. read up to ``chunk`` entries after the checkpoint (XRANGE, exclusive start);
2. write one file per day to a temporary name, fsync it, rename it, fsync the directory;
3. write the new checkpoint the same way: this is the commit point;
4. trim the stream up to the checkpoint (XTRIM MINID).

A crash before step 3 leaves files whose chunk starts after the checkpoint: the next run
deletes them and exports those entries again. A crash after step 3 leaves entries in the
stream that the next run trims without exporting. Either way each event is in the files
exactly once (the stream itself holds each event_id once: TrackEvents deduplicates).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from tqdm import tqdm

from feature_store.privacy import tombstones
from feature_store.store import FeatureStore
from formats.events import decode
from formats.exported import CHECKPOINT, COLUMNS, PARTS
from formats.files import fsync_dir, replace_durably, write_atomic


@dataclass(frozen=True)
class ExportReport:
    events: int
    files: int
    removed_orphans: int
    checkpoint: str
    purged: int = 0  # events of forgotten customers removed from earlier files


def _sid(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _state(out: Path) -> dict[str, Any]:
    """The checkpoint: last stream id in files, and the newest tombstone already applied."""
    path = out / CHECKPOINT
    state: dict[str, Any] = {"last_stream_id": "0-0", "tombstones_applied": 0}
    if path.exists():
        state.update(json.loads(path.read_text()))
    return state


def read_checkpoint(out: Path) -> str:
    return str(_state(out)["last_stream_id"])


def _purge(out: Path, customers: set[str]) -> int:
    """Remove the events of forgotten ``customers`` from files already exported."""
    if not customers:
        return 0
    removed = 0
    for path in sorted(out.glob(PARTS)):
        frame = pl.read_parquet(path)
        keep = frame.filter(~pl.col("customer_id").is_in(list(customers)))
        if keep.height == frame.height:
            continue
        removed += frame.height - keep.height
        if keep.height == 0:
            path.unlink()
        else:
            tmp = path.with_name(f".{path.name}.tmp")
            keep.write_parquet(tmp)
            replace_durably(tmp, path)
            continue
        fsync_dir(path.parent)
    return removed


def _part_start(path: Path) -> tuple[int, int]:
    first = path.stem.split("-")[1]  # part-<first>-<last>
    return _sid(first.replace("_", "-"))


def remove_orphans(out: Path, checkpoint: str) -> int:
    """Delete files of chunks that were never committed (see the module docstring)."""
    done = _sid(checkpoint)
    removed = 0
    for path in out.glob(PARTS):
        if _part_start(path) > done:
            path.unlink()
            removed += 1
    for tmp in out.glob("day=*/.part-*.tmp"):
        tmp.unlink()
    return removed


def _frame(entries: list[tuple[str, bytes | str]]) -> pl.DataFrame:
    rows = []
    for stream_id, payload in entries:
        e = decode(payload)
        rows.append(
            {
                "event_id": e.event_id,
                "customer_id": e.customer_id,
                "event_type": e.type,
                "product_id": e.product_id or None,
                "offer_id": e.offer_id or None,
                "timestamp": e.ts_ms,
                "quantity": e.quantity or 1.0,
                "amount": e.amount or None,
                "recommendation_id": e.recommendation_id or None,
                "stream_id": stream_id,
                "promotion_id": e.promotion_id or None,
            }
        )
    frame = pl.DataFrame(rows, schema={**COLUMNS, "timestamp": pl.Int64})
    return frame.with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))


def export_events(
    store: FeatureStore, out: Path, chunk: int = 50_000, progress: bool = True
) -> ExportReport:
    """Drain the event stream into ``out`` (see the module docstring for the guarantees)."""
    out.mkdir(parents=True, exist_ok=True)
    stream = store.keys.stream
    writer = store.writer
    state = _state(out)
    checkpoint = str(state["last_stream_id"])
    removed = remove_orphans(out, checkpoint)
    # Forgotten customers: dropped from new chunks, and purged from files of earlier runs.
    forgotten = tombstones(store)
    applied = int(state["tombstones_applied"])
    purged = _purge(out, {c for c, ts in forgotten.items() if ts > applied})
    state["tombstones_applied"] = max([applied, *forgotten.values()])
    exported = files = 0
    total = int(writer.xlen(stream))
    with tqdm(total=total, unit="event", disable=not progress, leave=False) as bar:
        while True:
            _trim(store, checkpoint)
            raw = writer.xrange(stream, min=f"({checkpoint}", count=chunk)
            if not raw:
                break
            entries = [
                (sid.decode() if isinstance(sid, bytes) else sid, fields[b"e"])
                for sid, fields in raw
            ]
            first, last = entries[0][0], entries[-1][0]
            frame = _frame(entries).filter(~pl.col("customer_id").is_in(list(forgotten)))
            days = frame.with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%d").alias("_day"))
            for (day,), part in days.group_by("_day"):
                directory = out / f"day={day}"
                directory.mkdir(exist_ok=True)
                name = f"part-{first.replace('-', '_')}-{last.replace('-', '_')}.parquet"
                tmp = directory / f".{name}.tmp"
                part.drop("_day").sort("stream_id").write_parquet(tmp)
                replace_durably(tmp, directory / name)
                files += 1
            state["last_stream_id"] = checkpoint = last
            write_atomic(out / CHECKPOINT, json.dumps(state).encode())
            exported += len(entries)
            bar.update(len(entries))
        _trim(store, checkpoint)
    if not (out / CHECKPOINT).exists() or purged:  # an empty export is still an export
        write_atomic(out / CHECKPOINT, json.dumps(state).encode())
    return ExportReport(exported, files, removed, checkpoint, purged)


def _trim(store: FeatureStore, checkpoint: str) -> None:
    """Drop stream entries up to and including ``checkpoint`` (they are in files)."""
    ms, seq = _sid(checkpoint)
    if (ms, seq) == (0, 0):
        return
    store.writer.xtrim(store.keys.stream, minid=f"{ms}-{seq + 1}", approximate=False)

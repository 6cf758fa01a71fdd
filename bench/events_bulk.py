"""Part 3 of the events benchmark (bench.events runs it): a bulk load of the world's
customers' features against the raw SET rate of the same Redis.

feature_store.bulk.load of the world (files read before, not timed) alternating with
`redis-benchmark -s SOCKET -t set -P 16 -n 1000000 -q` (Debian's redis-tools) on the same
Redis, --reps times each; medians and the median of the per-pair ratios. Diagnostics in the
same repetitions: redis-benchmark with values of the load's size over 1M keys, and
redis-cli --pipe fed the load's own commands encoded beforehand.
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl
import psutil

from bench.harness import Others, Redis, median
from feature_store.connection import connect
from feature_store.store import FeatureStore
from training.features import customer_features, feature_frames, product_features


@dataclass(frozen=True)
class BulkRep:
    customers: int
    products: int
    seconds: float  # LoadReport.seconds: writing the generation
    rows_per_s: float
    wall_s: float  # the whole load() call: features, writing, deleting the previous generation
    method: str
    raw_set_per_s: float  # redis-benchmark -t set -P 16 -n 1000000
    redis_gib: float  # used_memory after the load
    forks: int  # BGSAVE / AOF rewrite forks during the load
    others_raw: float = math.nan  # cores used by other processes during redis-benchmark
    others_load: float = math.nan  # ... during the load() call
    sized_set_per_s: float = math.nan  # the same with -d <mean value size> -r 1000000
    pipe_per_s: float = math.nan  # redis-cli --pipe of the load's commands, pre-encoded

    @property
    def ratio(self) -> float:
        return self.rows_per_s / self.raw_set_per_s


def redis_benchmark(redis: Redis, extra: tuple[str, ...] = ()) -> float:
    """SET requests per second from redis-benchmark -P 16 over the unix socket."""
    cmd = ["redis-benchmark", "-s", redis.socket, "-t", "set", "-P", "16", "-n", "1000000"]
    out = subprocess.run([*cmd, *extra, "-q"], capture_output=True, text=True, check=True).stdout
    found = re.findall(r"SET: ([0-9.]+) requests per second", out)
    if not found:
        raise SystemExit(f"cannot read redis-benchmark's output: {out[-500:]!r}")
    return float(found[-1])


SCRATCH_DB = 1  # database of the diagnostic writes, flushed after each


def encode_load(
    interactions: pl.DataFrame,
    catalog: pl.DataFrame,
    customers: pl.DataFrame,
    path: Path,
    namespace: str,
) -> tuple[int, float]:
    """The SET commands a load sends (same keys and values, a scratch generation), encoded
    once into ``path`` behind a SELECT of SCRATCH_DB; returns (rows, mean value bytes)."""
    from feature_store import bulk as fs_bulk

    tables = [
        (customer_features(interactions, catalog, customers), "c", "customer_id"),
        (product_features(interactions, catalog), "p", "product_id"),
    ]
    body = pl.struct(pl.exclude("customer_id", "product_id")).struct.json_encode()
    rows, value_bytes = 0, 0
    db = str(SCRATCH_DB)
    with path.open("wb") as f:
        f.write(f"*2\r\n$6\r\nSELECT\r\n${len(db)}\r\n{db}\r\n".encode())
        for frame, tag, id_column in tables:
            suffix = "profile" if tag == "c" else "product"
            key = pl.concat_str(
                pl.lit(f"{namespace}:v1:g0:{{{tag}:"), pl.col(id_column), pl.lit(f"}}:{suffix}")
            )
            kv = frame.select(key.alias("key"), body.alias("value"))
            value_bytes += int(kv["value"].str.len_bytes().sum())
            rows += kv.height
            for offset in range(0, kv.height, 100_000):
                part = kv.slice(offset, 100_000)
                resp = part.select(fs_bulk._resp_set(pl.col("key"), pl.col("value")).str.join(""))
                f.write(resp.item().encode())
    return rows, value_bytes / max(rows, 1)


def pipe_rate(redis: Redis, path: Path, rows: int) -> float:
    """Rows per second of redis-cli --pipe (the binary and flags bulk.load uses) fed ``path``."""
    from feature_store import bulk as fs_bulk

    cli = fs_bulk._cli_args(redis.url)
    if cli is None:
        return math.nan
    with path.open("rb") as stdin:
        t0 = time.perf_counter()
        done = subprocess.run([*cli, "--pipe"], stdin=stdin, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if done.returncode != 0 or "errors: 0," not in done.stdout:
        raise SystemExit(f"redis-cli --pipe failed: {done.stdout[-500:]} {done.stderr[-500:]}")
    return rows / seconds


def flush_scratch(redis: Redis) -> None:
    scratch = connect(f"{redis.url}?db={SCRATCH_DB}", timeout_s=60.0)
    scratch.flushdb()
    scratch.close()


def run(
    redis: Redis, world_dir: Path, model_version: str, reps: int, diagnostics: bool, out: Path
) -> list[BulkRep]:
    """``reps`` times: redis-benchmark, then the load (then the diagnostics), each once Redis
    runs no snapshot or AOF rewrite."""
    from feature_store import bulk as fs_bulk
    from training.ingest import read_catalog, read_customers, read_interactions

    print("  reading the world (not timed) ...", flush=True)
    interactions, _ = read_interactions(world_dir / "interactions.parquet")
    catalog, _ = read_catalog(world_dir / "catalog.parquet")
    customers, _ = read_customers(world_dir / "customers.parquet")
    resp = out / "load.resp"
    rows, value_bytes = (
        encode_load(interactions, catalog, customers, resp, redis.namespace)
        if diagnostics
        else (0, 0.0)
    )
    store = FeatureStore(redis.url, namespace=redis.namespace)
    result = []
    try:
        for i in range(reps):
            ours = [psutil.Process(), redis.process]
            redis.quiesce()
            with Others(ours) as others_raw:
                raw = redis_benchmark(redis)
            redis.client.delete("key:__rand_int__")  # redis-benchmark's only key
            redis.quiesce()
            forks = redis.forks()
            t0 = time.perf_counter()
            with Others(ours) as others_load:
                report = fs_bulk.load(
                    store,
                    *feature_frames(interactions, catalog, customers),
                    url=redis.url,
                    model_version=model_version,
                    progress=False,
                )
            wall = time.perf_counter() - t0
            rep = BulkRep(
                report.customers,
                report.products,
                report.seconds,
                report.rows_per_second,
                wall,
                report.method,
                raw,
                redis.used_gib(),
                redis.forks() - forks,
                others_raw.cores,
                others_load.cores,
            )
            if diagnostics:
                redis.quiesce()
                sized = ("-d", str(round(value_bytes)), "-r", "1000000", "--dbnum", "1")
                rep = replace(rep, sized_set_per_s=redis_benchmark(redis, sized))
                flush_scratch(redis)
                redis.quiesce()
                rep = replace(rep, pipe_per_s=pipe_rate(redis, resp, rows))
                flush_scratch(redis)
            result.append(rep)
            print(
                f"  rep {i + 1}: redis-benchmark SET {raw:,.0f}/s; load "
                f"{rep.customers + rep.products:,} rows in {rep.seconds:.2f} s = "
                f"{rep.rows_per_s:,.0f} rows/s ({rep.ratio:.0%} of raw; {rep.method}; "
                f"load() wall {wall:.1f} s; forks {rep.forks}); sized SET "
                f"{rep.sized_set_per_s:,.0f}/s, pre-encoded pipe {rep.pipe_per_s:,.0f} rows/s",
                flush=True,
            )
    finally:
        store.close()
        resp.unlink(missing_ok=True)
    return result


# -- report ------------------------------------------------------------------------------------


def bulk_table(reps: list[BulkRep]) -> str:
    lines = [
        "| run | rows (customers + products) | load s | load rows/s | redis-benchmark SET/s "
        "| load / raw | other processes, cores (benchmark / load) "
        "| Redis forks during the load | load() wall s | Redis used GiB "
        "| diagnostic: redis-benchmark SET/s, values of the load's mean size, 1M keys "
        "| diagnostic: redis-cli --pipe of the load's commands, pre-encoded, rows/s "
        "| load / pre-encoded pipe |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(reps):
        lines.append(
            f"| {i + 1} | {r.customers:,} + {r.products:,} | {r.seconds:.2f} "
            f"| {r.rows_per_s:,.0f} | {r.raw_set_per_s:,.0f} | {r.ratio:.0%} "
            f"| {r.others_raw:.2f} / {r.others_load:.2f} | {r.forks} "
            f"| {r.wall_s:.1f} | {r.redis_gib:.2f} | {r.sized_set_per_s:,.0f} "
            f"| {r.pipe_per_s:,.0f} | {r.rows_per_s / r.pipe_per_s:.0%} |"
        )
    lines.append(
        f"| **median** | | {median([r.seconds for r in reps]):.2f} "
        f"| **{median([r.rows_per_s for r in reps]):,.0f}** "
        f"| **{median([r.raw_set_per_s for r in reps]):,.0f}** "
        f"| **{median([r.ratio for r in reps]):.0%}** | | | | "
        f"| {median([r.sized_set_per_s for r in reps]):,.0f} "
        f"| {median([r.pipe_per_s for r in reps]):,.0f} "
        f"| {median([r.rows_per_s / r.pipe_per_s for r in reps]):.0%} |"
    )
    return "\n".join(lines)


def section(reps: list[BulkRep]) -> list[str]:
    """This part's lines of the report."""
    return [
        "",
        "### Bulk load of 1M customers",
        "",
        "`feature_store.bulk.load` of the world (files read before; 'load s' is "
        "LoadReport.seconds, writing the new generation; 'load() wall' adds computing the "
        "features and deleting the previous generation), alternating with `redis-benchmark "
        "-s SOCKET -t set -P 16 -n 1000000 -q` on the same Redis; load / raw = rows/s over "
        "SET/s of the same repetition. Each measurement starts once no snapshot or AOF "
        "rewrite runs. Diagnostics, same repetition: redis-benchmark with values of the "
        "load's mean size (-d) over 1M random keys (-r), and `redis-cli --pipe` (as the "
        "load runs it) fed the load's own SET commands encoded beforehand, i.e. the load "
        "without encoding in Python.",
        "",
        bulk_table(reps),
    ]

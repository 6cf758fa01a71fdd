"""MovieLens-100k in recsvc's input format, from the copy inside the recbole 1.2.1 wheel.

The wheel is downloaded once with pip (no dependencies, nothing installed) and the two files
we need are cached under the user's cache directory. Every rating counts as a purchase.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import polars as pl

from formats.errors import RecsvcError

WHEEL = "recbole==1.2.1"
MEMBERS = {
    "ml-100k.inter": "recbole/dataset_example/ml-100k/ml-100k.inter",
    "ml-100k.item": "recbole/dataset_example/ml-100k/ml-100k.item",
}


class DownloadError(RecsvcError):
    """The recbole wheel could not be downloaded or read."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "recsvc" / "ml-100k"


def fetch(cache: Path | None = None) -> Path:
    """Make sure the raw files are cached; returns the cache directory."""
    cache = cache or cache_dir()
    if all((cache / name).is_file() for name in MEMBERS):
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("recbole-*.whl"))
        if done.returncode != 0 or not wheels:
            raise DownloadError(
                f"could not download {WHEEL} with pip (is PyPI reachable?): "
                f"{done.stderr.strip()[-500:]}"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, member in MEMBERS.items():
                part = cache / f".{name}.part"
                part.write_bytes(wheel.read(member))
                part.replace(cache / name)
    return cache


def load(cache: Path | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(interactions, catalog) frames in recsvc's input schema."""
    raw = fetch(cache)
    inter = pl.read_csv(raw / "ml-100k.inter", separator="\t", infer_schema=False)
    inter.columns = [c.split(":")[0] for c in inter.columns]
    interactions = inter.select(
        pl.col("user_id").alias("customer_id"),
        pl.col("item_id").alias("product_id"),
        pl.from_epoch(pl.col("timestamp").cast(pl.Float64).cast(pl.Int64), time_unit="s")
        .dt.replace_time_zone("UTC")
        .alias("timestamp"),
        pl.lit("purchase").alias("event_type"),
        pl.lit(1).alias("quantity"),
        pl.col("rating").cast(pl.Float64).alias("rating"),
    )
    items = pl.read_csv(raw / "ml-100k.item", separator="\t", infer_schema=False, quote_char=None)
    items.columns = [c.split(":")[0] for c in items.columns]
    catalog = items.select(
        pl.col("item_id").alias("product_id"),
        pl.col("movie_title").alias("title"),
        pl.col("class").str.split(" ").list.first().fill_null("unknown").alias("category"),
        pl.lit(None, dtype=pl.Float64).alias("price"),
        pl.lit(True).alias("in_stock"),
        pl.col("release_year"),
        pl.col("class").alias("genres"),
    )
    return interactions, catalog


def write(out: Path, cache: Path | None = None) -> dict[str, Path]:
    interactions, catalog = load(cache)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"interactions": out / "interactions.csv", "catalog": out / "catalog.csv"}
    interactions.write_csv(paths["interactions"])
    catalog.write_csv(paths["catalog"])
    return paths

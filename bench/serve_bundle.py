"""Bundles for the serving benchmark: the scale bench's 100k-product bundle, a cached
1M-product one, and the request mix drawn from a bundle."""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from bench.harness import run_timed
from formats.bundle import CUSTOMERS, PRODUCTS, BundleError, read_manifest, resolve
from recsvc.v1 import recommender_pb2 as pb

SCALE_MODELS = Path("var/bench/scale/models")
WORKDIR = Path("var/bench/serve")


@dataclass(frozen=True)
class Catalog:
    """One bundle to serve: where it is and what its manifest says."""

    label: str  # "100k", "1M"
    model_dir: Path
    bundle: Path
    manifest: dict[str, Any]

    @property
    def products(self) -> int:
        return int(self.manifest["counts"]["products"])

    @property
    def customers(self) -> int:
        return int(self.manifest["counts"]["customers"])

    @property
    def index(self) -> str:
        index = self.manifest["index"]
        ef = index.get("ef_search") or index.get("params", {}).get("ef_search")
        beam = f", efSearch {ef}" if index["kind"] == "hnsw" and ef else ""
        return f"{index['kind']}{beam}, recall@{index['recall_k']} {index['recall']:.3f}"


def published(label: str, model_dir: Path) -> Catalog | None:
    """The published bundle of ``model_dir`` (manifest checked; checksums at server start)."""
    try:
        path = resolve(model_dir)
        return Catalog(label, model_dir, path, read_manifest(path))
    except BundleError:
        return None


def scale_catalog(model_dir: Path = SCALE_MODELS) -> Catalog:
    catalog = published("100k", model_dir)
    if catalog is None:
        raise SystemExit(
            f"no published bundle in {model_dir}: make it with `python -m bench.train_scale` "
            "(1M customers x 100k products; about 5 minutes on 2 cores)"
        )
    return catalog


def million_catalog(workdir: Path = WORKDIR, products: int = 1_000_000) -> Catalog:
    """A bundle over ``products`` products, trained once and cached under ``workdir``."""
    tag = "1m" if products == 1_000_000 else f"{products}"
    models = workdir / f"models-{tag}"
    label = "1M" if products == 1_000_000 else f"{products:,}"
    if (catalog := published(label, models)) is not None:
        return catalog
    recsvc = str(Path(sys.executable).with_name("recsvc"))
    world = workdir / f"world-{tag}"
    if not (world / "interactions.parquet").exists():
        print(f"building the {label}-product world in {world} (once) ...", flush=True)
        synth = run_timed(
            [
                recsvc,
                "data",
                "synth",
                "--customers",
                str(max(products * 3 // 10, 1000)),
                "--products",
                str(products),
                "--events-per-customer",
                "10",
                "--seed",
                "2",
                "--out",
                str(world),
            ]
        )
        print(f"  synth: {synth.seconds:.0f} s, peak {synth.peak_rss_gib:.1f} GiB", flush=True)
    print(f"training the {label}-product bundle in {models} (once) ...", flush=True)
    start = time.perf_counter()
    train = run_timed(
        [
            recsvc,
            "train",
            "--interactions",
            str(world / "interactions.parquet"),
            "--catalog",
            str(world / "catalog.parquet"),
            "--eval-users",
            "2000",
            "--baselines",
            "popularity",
            "--model-dir",
            str(models),
            "--quiet",
        ]
    )
    print(
        f"  train: {time.perf_counter() - start:.0f} s, peak {train.peak_rss_gib:.1f} GiB",
        flush=True,
    )
    catalog = published(label, models)
    if catalog is None:
        raise SystemExit(f"recsvc train did not publish a bundle in {models}")
    return catalog


@dataclass(frozen=True)
class RequestMix:
    """Serialized requests, cycled by the load generator."""

    recommend: list[bytes]
    health: list[bytes]
    category_share: float
    categories: int  # distinct categories used by the filtered requests


def request_mix(
    catalog: Catalog, n: int = 4000, category_share: float = 0.2, limit: int = 20, seed: int = 0
) -> RequestMix:
    """Random known customers, ``limit`` items; ``category_share`` of them filtered to one
    category, drawn with the catalog's popularity (a category page of a busy aisle)."""
    from grpc_health.v1 import health_pb2

    rng = random.Random(seed)
    customers = pl.read_parquet(catalog.bundle / CUSTOMERS, columns=["customer_id"])
    ids = customers["customer_id"].to_list()
    products = pl.read_parquet(catalog.bundle / PRODUCTS, columns=["category", "popularity"])
    weights = (
        products.with_columns(pl.col("category").cast(pl.Utf8).fill_null("uncategorized"))
        .group_by("category")
        .agg(pl.col("popularity").sum() + 1.0)
        .sort("category")
    )
    names = weights["category"].to_list()
    cum = weights["popularity"].to_list()
    requests = []
    used: set[str] = set()
    for _ in range(n):
        request = pb.RecommendProductsRequest(customer_id=rng.choice(ids), limit=limit)
        if rng.random() < category_share:
            category = rng.choices(names, weights=cum)[0]
            used.add(category)
            request.filter.include_categories.append(category)
        requests.append(request.SerializeToString())
    health = [health_pb2.HealthCheckRequest(service="").SerializeToString()]
    return RequestMix(requests, health, category_share, len(used))

"""`recsvc recommend-batch` and `recsvc audience`: offline answers from a bundle, to files."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from recsvc.cli.args import _csv, _positive_int, add_model_dir
from recsvc.cli.common import CliError

if TYPE_CHECKING:
    from formats.types import Filter
    from recsvc.cli.args import Subparsers
    from recsvc.engine import Engine


def register(sub: Subparsers) -> None:
    rb = sub.add_parser(
        "recommend-batch",
        help="recommendations for many customers, to a Parquet file (e.g. an email campaign)",
        description="RecommendProducts for every customer of --customers (or --all customers "
        "of the bundle), with the same filters and the same answers as the server gives for "
        "the same bundle and settings (RECSVC_REPEAT_CATEGORIES, RECSVC_MAX_PER_CATEGORY), "
        "without real-time events. Writes one row per item: customer_id, rank, product_id, "
        "score, reason, category, personalized, recommendation_id (rb-..., one per customer: "
        "send it back with the events of the campaign).",
    )
    who = rb.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--customers",
        type=Path,
        help="Parquet or CSV with a customer_id column, or a text file of one id per line",
    )
    who.add_argument("--all", action="store_true", help="every customer the bundle knows")
    rb.add_argument("--limit", type=_positive_int, default=20, help="items per customer (20)")
    rb.add_argument("--out", type=Path, required=True, help="the Parquet file to write")
    _add_bundle_options(rb)
    f = rb.add_argument_group("filter (as RecommendProducts' Filter)")
    f.add_argument("--category", action="append", default=[], help="only this category (repeat)")
    f.add_argument("--exclude-category", action="append", default=[], help="never this one")
    f.add_argument("--exclude-products", type=_csv, default=(), help="comma-separated ids")
    f.add_argument("--in-stock", action="store_true", help="only products in stock")
    f.add_argument("--min-price", type=float)
    f.add_argument("--max-price", type=float)
    f.add_argument("--include-purchased", action="store_true", help="also products bought")
    f.add_argument("--max-per-category", type=int, default=0, help="0 = the server default")
    rb.add_argument("--workers", type=int, default=0, help="processes (default: one per CPU)")
    rb.add_argument("--quiet", action="store_true", help="no progress bar")
    rb.set_defaults(func=cmd_recommend_batch)

    au = sub.add_parser(
        "audience",
        help="the customers most likely to want a product, to a file",
        description="Customers ranked by their affinity to --product (the inner product of "
        "their vectors, the score RecommendProducts ranks by), best first; customers who "
        "already had it are left out unless its category is a repeat-purchase one or "
        "--include-purchased. Writes customer_id, rank, score (.parquet or .csv).",
    )
    au.add_argument("--product", required=True)
    au.add_argument("--top", type=_positive_int, default=10_000, help="customers (10,000)")
    au.add_argument("--out", type=Path, required=True, help="FILE.parquet or FILE.csv")
    au.add_argument("--include-purchased", action="store_true")
    _add_bundle_options(au)
    au.set_defaults(func=cmd_audience)


def _add_bundle_options(parser: argparse.ArgumentParser) -> None:
    add_model_dir(parser)
    parser.add_argument("--version", help="bundle version (default: the published one)")


def _engine(args: argparse.Namespace) -> Engine:
    """The bundle's engine, with the server's settings from the environment."""
    from formats import bundle as b
    from recsvc.config import ServeConfig
    from recsvc.engine import Engine, EngineConfig

    config = ServeConfig.from_env(model_dir=args.model_dir)
    settings = EngineConfig(
        repeat_categories=config.repeat_categories,
        max_per_category=config.max_per_category,
        fold_in=False,  # no real-time events in a batch
    )
    return Engine.load(b.resolve(args.model_dir, args.version), settings)


def _filter(args: argparse.Namespace) -> Filter:
    from formats.types import Filter

    return Filter(
        include_categories=frozenset(args.category),
        exclude_categories=frozenset(args.exclude_category),
        exclude_product_ids=frozenset(args.exclude_products),
        in_stock_only=args.in_stock,
        min_price=args.min_price,
        max_price=args.max_price,
        include_purchased=args.include_purchased,
        max_per_category=args.max_per_category,
    ).check()


def cmd_recommend_batch(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from recsvc.batch import read_customer_ids, recommend_batch

    if args.out.suffix.lower() != ".parquet":
        raise CliError(f"--out {args.out}: write a .parquet file")
    if args.max_per_category < 0:
        raise CliError("--max-per-category must be >= 0")
    filter = _filter(args)
    customers = read_customer_ids(args.customers) if args.customers else None
    started = time.perf_counter()
    engine = _engine(args)
    if customers is None:
        customers = engine.bundle.customer_ids.to_list()
    loaded = time.perf_counter() - started
    with tqdm(total=len(customers), unit="customer", disable=args.quiet, smoothing=0.1) as bar:

        def advance(n: int) -> None:
            bar.update(n)

        result = recommend_batch(
            engine, customers, args.limit, filter, args.out, args.workers, advance
        )
    took = time.perf_counter() - started
    print(
        f"{result.customers:,} customers ({result.personalized:,} personalized), "
        f"{result.rows:,} rows from model {engine.version} to {args.out} in {took:.1f} s "
        f"(model load {loaded:.1f} s)"
    )


def cmd_audience(args: argparse.Namespace) -> None:
    from recsvc.batch import audience

    suffix = args.out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise CliError(f"--out {args.out}: use a .parquet or .csv file name")
    engine = _engine(args)
    frame = audience(engine, args.product, args.top, args.include_purchased)
    if suffix == ".csv":
        frame.write_csv(args.out)
    else:
        frame.write_parquet(args.out)
    print(
        f"{frame.height:,} customers for product {args.product} (model {engine.version}) "
        f"to {args.out}",
        file=sys.stdout,
    )

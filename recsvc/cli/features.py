"""`recsvc features`: load customer and product features into Redis, and show them."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from recsvc.cli.args import (
    _positive_int,
    add_analytics_options,
    add_inputs,
    add_model_dir,
    analytics_config,
)
from recsvc.cli.common import feature_store

if TYPE_CHECKING:
    from recsvc.cli.args import Subparsers


def register(sub: Subparsers) -> None:
    feats = sub.add_parser("features", help="load and inspect features in Redis")
    fsub = feats.add_subparsers(dest="features_command", required=True, metavar="ACTION")
    f = fsub.add_parser(
        "load",
        help="bulk-load customer and product features from files",
        description="Compute customer features (counters, spend, recent products, top "
        "categories, tier, points) and product features (category, price, stock, popularity) "
        "and write them to Redis as a new generation, switched live atomically. Redis: "
        "REDIS_URL, else the embedded one in RECSVC_REDIS_DIR (default beside --model-dir).",
    )
    add_inputs(f, interactions_required=True)
    add_model_dir(f)
    f.add_argument("--chunk", type=_positive_int, default=50_000, help="rows per write")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    add_analytics_options(f, as_of_required=False)
    f.add_argument("--no-analytics", action="store_true", help="skip RFM, stages and CLV")
    f.set_defaults(func=cmd_load)
    f = fsub.add_parser(
        "show",
        help="print the features held for a customer or product",
        description="Print what Redis holds: a customer's loaded profile and real-time "
        "activity; a product's loaded features and what UpdateProducts set (stock, price, "
        "title, category, attributes). --product without an id lists every product created "
        "or described through UpdateProducts (the products served until training adopts them).",
    )
    add_model_dir(f)
    who = f.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer")
    who.add_argument(
        "--product", nargs="?", const="", help="a product id; none: list live products"
    )
    f.set_defaults(func=cmd_show)


def cmd_show(args: argparse.Namespace) -> None:
    shown: dict[str, Any]
    with feature_store(args.model_dir) as (store, _):
        if args.customer:
            shown = {"profile": store.profile(args.customer)}
            activity = asdict(store.activity(args.customer))
            del activity["profile"]  # shown above
            activity["purchased"] = sorted(activity["purchased"])
            shown["activity"] = activity
        else:
            from feature_store.catalog import described_products

            described = {pid: _described(c) for pid, c in described_products(store).items()}
            if args.product:
                shown = {"product": store.product(args.product)}
                shown["live"] = described.get(args.product)
            else:
                shown = {"live_products": len(described), "products": list(described.values())}
    print(json.dumps(shown, indent=2, default=str))


def _described(change: Any) -> dict[str, Any]:
    """A product as UpdateProducts left it (formats.types.ProductChange), for people."""
    created = change.created_ms
    return {
        "product_id": change.product_id,
        "title": change.title,
        "category": change.category,
        "attributes": change.attributes,
        "stock": change.stock,
        "price": change.price,
        "created_at": datetime.fromtimestamp(created / 1000, UTC).isoformat(timespec="seconds")
        if created
        else None,
    }


def cmd_load(args: argparse.Namespace) -> None:
    from feature_store import bulk
    from formats import bundle as b
    from training.analytics import with_tier_rules
    from training.dataset import catalog_from_interactions
    from training.features import build_features
    from training.ingest import read_catalog, read_customers, read_interactions

    interactions, report = read_interactions(args.interactions, args.on_error)
    print(report.summary())
    catalog = (
        read_catalog(args.catalog, args.on_error)[0]
        if args.catalog
        else catalog_from_interactions(interactions)
    )
    customers = read_customers(args.customers, args.on_error)[0] if args.customers else None
    last = interactions.get_column("timestamp").max()
    day: datetime = args.as_of or (last if isinstance(last, datetime) else datetime.now(UTC))
    customers = with_tier_rules(customers, interactions, day, args.tier_rules, catalog)
    published = b.current_version(args.model_dir) is not None
    features = build_features(
        interactions,
        catalog,
        customers,
        as_of=day,
        horizon_days=args.horizon_days,
        analytics=None if args.no_analytics else analytics_config(args),
        bundle=b.load_bundle(b.resolve(args.model_dir)) if published else None,
    )
    if features.as_of:
        print(
            f"analytics as of {features.as_of} over {args.horizon_days} days: "
            f"{features.customers.height:,} customers"
        )
    with feature_store(args.model_dir) as (store, url):
        result = bulk.load(
            store,
            features.customers,
            features.products,
            url=url,
            model_version=b.current_version(args.model_dir) or "",
            chunk=args.chunk,
            progress=not args.quiet,
        )
    print(
        f"generation {result.generation} live: {result.customers:,} customers and "
        f"{result.products:,} products in {result.seconds:.1f} s "
        f"({result.rows_per_second:,.0f} rows/s, {result.method})"
        + (f"; generation {result.previous} deleted" if result.previous else "")
    )

"""`recsvc data`: generate, fetch and validate input data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from recsvc.cli.args import _fraction, add_inputs
from recsvc.cli.common import CliError

if TYPE_CHECKING:
    from recsvc.cli.args import Subparsers


def register(sub: Subparsers) -> None:
    data = sub.add_parser("data", help="generate, fetch and validate input data")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = dsub.add_parser(
        "synth",
        help="write a synthetic retail world (interactions, catalog, customers)",
        description="Write a deterministic synthetic retail world: categories, prices, power-law "
        "popularity, customers with latent tastes, repeat purchases, seasonality, tiers, points.",
    )
    synth.add_argument("--customers", type=int, default=10_000, help="default %(default)s")
    synth.add_argument("--products", type=int, default=1_000, help="default %(default)s")
    synth.add_argument("--seed", type=int, default=0, help="default %(default)s")
    synth.add_argument(
        "--events-per-customer", type=float, default=20.0, help="mean interactions per customer"
    )
    synth.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    synth.add_argument("--out", type=Path, required=True, help="output directory")
    synth.set_defaults(func=cmd_synth)
    ml = dsub.add_parser(
        "movielens100k",
        help="write MovieLens-100k in recsvc's input format",
        description="Write MovieLens-100k (every rating a purchase) as interactions.csv and "
        "catalog.csv, from the copy inside the recbole 1.2.1 wheel (downloaded once with pip, "
        "cached under ~/.cache/recsvc).",
    )
    ml.add_argument("--out", type=Path, required=True, help="output directory")
    ml.set_defaults(func=cmd_movielens100k)
    sp = dsub.add_parser(
        "split",
        help="split interactions into train and test files",
        description="Write OUT/train.<fmt> and OUT/test.<fmt>: the held-out split `recsvc "
        "train` evaluates with (temporal: the last --test-fraction of each customer's "
        "history; random: a random share of the rows), so a model trained on the first file "
        "can be scored on the second with `recsvc evaluate`.",
    )
    sp.add_argument("--interactions", type=Path, required=True)
    sp.add_argument("--split", choices=("temporal", "random"), default="temporal")
    sp.add_argument("--test-fraction", type=_fraction, default=0.2, help="default %(default)s")
    sp.add_argument("--seed", type=int, default=0, help="for --split random (default 0)")
    sp.add_argument(
        "--format", choices=("csv", "parquet"), default=None, help="default: the input's"
    )
    sp.add_argument("--on-error", choices=("fail", "skip"), default="fail")
    sp.add_argument("--out", type=Path, required=True, help="output directory")
    sp.set_defaults(func=cmd_split)
    val = dsub.add_parser("validate", help="check input files and report bad rows")
    add_inputs(val, interactions_required=False)
    val.set_defaults(func=cmd_validate)


def cmd_synth(args: argparse.Namespace) -> None:
    from training import synth

    cfg = synth.SynthConfig(
        customers=args.customers,
        products=args.products,
        seed=args.seed,
        events_per_customer=args.events_per_customer,
    )
    world = synth.generate(cfg, progress=True)
    paths = synth.write_world(world, args.out, args.format)
    print(
        f"wrote {world.interactions.height:,} interactions, {world.catalog.height:,} products, "
        f"{world.customers.height:,} customers to {args.out}"
    )
    for name, path in paths.items():
        print(f"  {name}: {path}")


def cmd_movielens100k(args: argparse.Namespace) -> None:
    from training import movielens

    paths = movielens.write(args.out)
    for name, path in paths.items():
        print(f"  {name}: {path}")


def cmd_split(args: argparse.Namespace) -> None:
    from training.ingest import read_interactions
    from training.split import split_frame

    frame, report = read_interactions(args.interactions, args.on_error)
    print(report.summary())
    train, test = split_frame(frame, args.split, args.test_fraction, args.seed)
    fmt = args.format or ("parquet" if args.interactions.suffix == ".parquet" else "csv")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("test", test)):
        path = args.out / f"{name}.{fmt}"
        if fmt == "parquet":
            part.write_parquet(path)
        else:
            part.write_csv(path)
        print(f"  {name}: {path} ({part.height:,} rows)")


def cmd_validate(args: argparse.Namespace) -> None:
    from training import ingest

    readers = (
        (args.interactions, ingest.read_interactions),
        (args.catalog, ingest.read_catalog),
        (args.customers, ingest.read_customers),
    )
    if not any(path for path, _ in readers):
        raise CliError("give at least one of --interactions, --catalog, --customers")
    for path, reader in readers:
        if path is not None:
            _, report = reader(path, args.on_error)
            print(report.summary())
            for example in report.examples:
                print(f"  {example}")

"""`recsvc analytics`: RFM, segments, lifecycle stages, expected purchases, CLV, churn risk."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from recsvc.cli.args import add_analytics_options, add_inputs, analytics_config
from recsvc.cli.common import CliError

if TYPE_CHECKING:
    from recsvc.cli.args import Subparsers


def register(sub: Subparsers) -> None:
    an = sub.add_parser(
        "analytics",
        help="RFM, segments, lifecycle stages, expected purchases, CLV and churn risk",
        description="One row per customer: customer_id, recency_days, frequency (repeat "
        "purchase days), monetary, r/f/m scores, rfm_score, segment, lifecycle_stage, "
        "expected_purchases and clv over the horizon, p_alive, churn_risk, top_categories (and "
        "tier, points with --customers). A repeat purchase is a day with at least one purchase. "
        "The repeat-buying model (BG/NBD, MBG/NBD or Pareto/NBD) is chosen on a holdout carved "
        "from the history; --holdout-check also reports how it forecasts a later holdout.",
    )
    add_inputs(an, interactions_required=True)
    add_analytics_options(an, as_of_required=True)
    an.add_argument("--out", type=Path, required=True, help="FILE.parquet or FILE.csv")
    an.add_argument(
        "--holdout-check",
        action="store_true",
        help="also fit on the first half of the purchase history and report on the second",
    )
    an.set_defaults(func=cmd_analytics)


def cmd_analytics(args: argparse.Namespace) -> None:
    import polars as pl

    from training.analytics import analyze, holdout_check, holdout_split, with_tier_rules
    from training.ingest import read_catalog, read_customers, read_interactions

    suffix = args.out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise CliError(f"--out {args.out}: use a .parquet or .csv file name")
    interactions, report = read_interactions(args.interactions, args.on_error)
    print(report.summary(), file=sys.stderr)
    catalog = read_catalog(args.catalog, args.on_error)[0] if args.catalog else None
    customers = read_customers(args.customers, args.on_error)[0] if args.customers else None
    customers = with_tier_rules(customers, interactions, args.as_of, args.tier_rules, catalog)
    config = analytics_config(args)
    result = analyze(interactions, args.as_of, args.horizon_days, customers, catalog, config)
    table = result.table
    if suffix == ".csv":  # lists do not fit CSV cells
        table = table.with_columns(pl.col("top_categories").list.join("|"))
        table.write_csv(args.out)
    else:
        table.write_parquet(args.out)
    model = result.model
    print(
        f"{table.height:,} customers as of {args.as_of.date()} to {args.out}"
        + (f"; model {model.model.label}" if model is not None else "")
    )
    for note in result.notes:
        print(f"note: {note}")
    if args.holdout_check:
        calibration_end, holdout_end = holdout_split(interactions)
        print(holdout_check(interactions, calibration_end, holdout_end).format())

"""`recsvc report`: campaign funnels per offer and per recommendation source, or results per
experiment arm (`--by arm`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from recsvc.cli.args import _datetime, _positive_int
from recsvc.cli.common import CliError

if TYPE_CHECKING:
    import polars as pl

    from recsvc.cli.args import Subparsers


def register(sub: Subparsers) -> None:
    rp = sub.add_parser(
        "report",
        help="campaign funnels per offer, recommendation source and promotion, or per arm",
        description="Impressions, clicks, conversions, CTR, conversion and redemption rates and "
        "revenue per offer, per recommendation source (RecommendProducts, SimilarProducts, "
        "RankProducts, TrendingProducts, RecommendOffers: purchases attributed through "
        "recommendation_id) and per promotion (items the server placed or boosted, and the "
        "impressions, clicks and purchases of those items), over the events exported by "
        "`recsvc events export`. With --by arm: per experiment arm (from the "
        "recommendation_id), customers, impressions, clicks, CTR, purchases and revenue "
        "attributed, conversion (purchases per impression) and revenue per impression, with 95%% "
        "intervals and a two-sided test of each arm against the control arm.",
    )
    rp.add_argument("--events", type=Path, required=True, help="the export directory")
    rp.add_argument("--from", dest="start", type=_datetime, help="start (ISO date or time, UTC)")
    rp.add_argument("--to", dest="end", type=_datetime, help="end, exclusive (ISO, UTC)")
    rp.add_argument("--format", choices=("table", "csv", "json"), default="table")
    rp.add_argument("--plot", type=Path, help="also draw the funnels to this PNG file")
    rp.add_argument(
        "--by",
        choices=("source", "arm"),
        default="source",
        help="source: per offer and recommendation source (default); arm: per experiment arm",
    )
    rp.add_argument(
        "--control", default="control", help="--by arm: the control arm's name (default control)"
    )
    rp.add_argument(
        "--min-sample",
        type=_positive_int,
        default=1000,
        help="--by arm: warn about arms with fewer impressions (default %(default)s)",
    )
    rp.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> None:
    from training.report import campaign_report, format_table, plot_funnel, read_events

    if args.by == "arm":
        _report_arms(args, read_events(args.events))
        return
    report = campaign_report(read_events(args.events), args.start, args.end)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "offers": report.offers.to_dicts(),
                    "sources": report.sources.to_dicts(),
                    "promotions": report.promotions.to_dicts(),
                },
                indent=2,
            )
        )
    elif args.format == "csv":
        print("# offers")
        print(report.offers.write_csv(), end="")
        print("# sources")
        print(report.sources.write_csv(), end="")
        print("# promotions")
        print(report.promotions.write_csv(), end="")
    else:
        print(f"{report.events:,} events")
        print(format_table(report.offers, "per offer"))
        print(format_table(report.sources, "per recommendation source"))
        print(format_table(report.promotions, "per promotion"))
    if args.plot:
        plot_funnel(report, args.plot)
        print(f"funnel drawn to {args.plot}", file=sys.stderr)


def _report_arms(args: argparse.Namespace, events: pl.DataFrame) -> None:
    from training.experiment_report import arm_report, format_arms

    if args.plot:
        raise CliError("--plot draws the funnels of --by source; not available with --by arm")
    arms = arm_report(events, args.start, args.end, args.control, args.min_sample)
    if args.format == "json":
        print(json.dumps({"arms": arms.to_dicts()}, indent=2))
    elif args.format == "csv":
        print(arms.write_csv(), end="")
    else:
        print(f"{events.height:,} events")
        print(format_arms(arms))

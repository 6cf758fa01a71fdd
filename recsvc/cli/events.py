"""`recsvc events`: export tracked events from the Redis stream."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from recsvc.cli.args import _positive_int, add_model_dir
from recsvc.cli.common import feature_store

if TYPE_CHECKING:
    from recsvc.cli.args import Subparsers


def register(sub: Subparsers) -> None:
    evs = sub.add_parser("events", help="export tracked events")
    esub = evs.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    e = esub.add_parser(
        "export",
        help="drain the event stream into Parquet files by day",
        description="Move events from the Redis stream to OUT/day=YYYY-MM-DD/*.parquet. Safe "
        "to interrupt and re-run: each event lands in the files exactly once. The directory "
        "can be given to `recsvc train --interactions`.",
    )
    e.add_argument("--out", type=Path, required=True)
    add_model_dir(e)
    e.add_argument("--chunk", type=_positive_int, default=50_000, help="events per file round")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> None:
    from feature_store.export import export_events

    with feature_store(args.model_dir) as (store, _):
        report = export_events(store, args.out, args.chunk, progress=not args.quiet)
    removed = report.removed_orphans
    print(
        f"exported {report.events:,} events into {report.files} files under {args.out} "
        f"(checkpoint {report.checkpoint})"
        + (f"; removed {removed} uncommitted files of an interrupted run" if removed else "")
    )

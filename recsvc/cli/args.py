"""Argument types and the options several commands share.

The type parsers keep the leading underscore of their old names on purpose: argparse prints a
type's ``__name__`` when it raises ValueError ("invalid _fraction value: 'abc'"), and renaming
them would change what the CLI prints.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from formats.events import INTERACTION_TYPES

if TYPE_CHECKING:
    from training.analytics import AnalyticsConfig

    # What add_subparsers returns, for each module's register(); argparse has no public name.
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

DEFAULT_MODEL_DIR = os.environ.get("RECSVC_MODEL_DIR", "var/models")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def _share(text: str) -> float:
    """A fraction in [0, 1): 0 turns the feature off."""
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _events(text: str) -> tuple[str, ...]:
    events = _csv(text)
    unknown = [e for e in events if e not in INTERACTION_TYPES]
    if unknown or not events:
        raise argparse.ArgumentTypeError(
            f"unknown event type(s) {', '.join(unknown) or '(none given)'}; "
            f"expected some of {', '.join(INTERACTION_TYPES)}"
        )
    return events


def _event_weights(text: str) -> dict[str, float]:
    from formats.weights import DEFAULT_EVENT_WEIGHTS

    weights = dict(DEFAULT_EVENT_WEIGHTS)
    for part in _csv(text):
        name, _, value = part.partition("=")
        if name not in INTERACTION_TYPES or not value:
            raise argparse.ArgumentTypeError(
                f"bad event weight {part!r}: expected EVENT=WEIGHT, "
                f"EVENT one of {', '.join(INTERACTION_TYPES)}"
            )
        weights[name] = float(value)
    return weights


def _datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add_model_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=Path(DEFAULT_MODEL_DIR),
        help="directory of model bundles (env RECSVC_MODEL_DIR; default %(default)s)",
    )


def add_inputs(parser: argparse.ArgumentParser, interactions_required: bool) -> None:
    parser.add_argument(
        "--interactions",
        type=Path,
        required=interactions_required,
        help="CSV or Parquet: customer_id, product_id, timestamp, event_type, quantity, amount",
    )
    parser.add_argument(
        "--catalog", type=Path, help="CSV or Parquet: product_id, title, category, price, in_stock"
    )
    parser.add_argument(
        "--customers", type=Path, help="CSV or Parquet: customer_id, signup_date, birthday, ..."
    )
    parser.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="fail on the first file with bad rows (default) or skip bad rows",
    )


def add_analytics_options(parser: argparse.ArgumentParser, as_of_required: bool) -> None:
    parser.add_argument(
        "--as-of",
        type=_datetime,
        required=as_of_required,
        help="analytics date (ISO, UTC)" + ("" if as_of_required else "; default: last event"),
    )
    parser.add_argument(
        "--horizon-days",
        type=_positive_int,
        default=90,
        help="expected purchases and CLV over this many days (default %(default)s)",
    )
    parser.add_argument(
        "--lifecycle-rules",
        help="stage thresholds, e.g. 'new_days=30,active_days=90,at_risk_days=180,"
        "loyal_min_frequency=3,loyal_min_tenure_days=0' (these are the defaults)",
    )
    parser.add_argument(
        "--tier-rules",
        help="derive tiers from spend over the last 365 days, e.g. "
        "'silver=100,gold=500,platinum=2000' (customers below every threshold keep the tier "
        "of --customers)",
    )


def analytics_config(args: argparse.Namespace) -> AnalyticsConfig:
    """The analytics settings of the options added by ``add_analytics_options``."""
    from training.analytics import AnalyticsConfig, LifecycleRules

    if not args.lifecycle_rules:
        return AnalyticsConfig()
    return AnalyticsConfig(lifecycle=LifecycleRules.parse(args.lifecycle_rules))

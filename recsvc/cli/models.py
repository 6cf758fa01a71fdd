"""`recsvc models`: list, show, compare, promote and roll back the bundles of a model directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from recsvc.cli.args import _events, _positive_int, add_model_dir
from recsvc.cli.common import CliError

if TYPE_CHECKING:
    from recsvc.cli.args import Subparsers


def register(sub: Subparsers) -> None:
    models = sub.add_parser(
        "models", help="list, show, compare, promote and roll back model bundles"
    )
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    for name, text, func in (
        ("list", "list bundles, marking the published one", cmd_list),
        ("show", "print a bundle's manifest", cmd_show),
        ("promote", "verify a bundle and publish it", cmd_promote),
        ("rollback", "re-publish the previously published bundle", cmd_rollback),
    ):
        m = msub.add_parser(name, help=text, description=text)
        add_model_dir(m)
        if name in ("show", "promote"):
            m.add_argument(
                "version",
                nargs="?" if name == "show" else None,
                help="bundle version" + (" (default: the published one)" if name == "show" else ""),
            )
        m.set_defaults(func=func)
    c = msub.add_parser(
        "compare",
        help="two bundles side by side on held-out interactions",
        description="Score bundles A and B (versions in --model-dir, or bundle directories) on "
        "the same targets: the rows of --interactions (purchases by default) whose customer "
        "and product both bundles know and that neither saw in training. Prints ndcg, recall, "
        "map, hit rate and coverage at k for each, B's change relative to A, and popularity.",
    )
    c.add_argument("a", help="bundle version or directory (the reference)")
    c.add_argument("b", help="bundle version or directory (the candidate)")
    c.add_argument("--interactions", type=Path, required=True, help="held-out interactions")
    add_model_dir(c)
    c.add_argument("-k", type=_positive_int, default=20, help="cut-off (default %(default)s)")
    c.add_argument("--target-events", type=_events, default=("purchase",), help="default purchase")
    c.add_argument("--on-error", choices=("fail", "skip"), default="fail")
    c.set_defaults(func=cmd_compare)


def cmd_list(args: argparse.Namespace) -> None:
    from formats import bundle as b

    current = b.current_version(args.model_dir)
    rows = b.list_versions(args.model_dir)
    if not rows:
        print(f"no bundles in {args.model_dir}")
    for m in rows:
        mark = "*" if m.get("version") == current else " "
        if "error" in m:
            print(f"{mark} {m['version']}  UNREADABLE: {m['error']}")
            continue
        ev = m["evaluation"]
        k = ev["k"]
        served = str(m.get("model", "als"))
        ndcg = ev["models"].get(served, ev["models"]["als"])[f"ndcg@{k}"]
        print(
            f"{mark} {m['version']}  created {m['created_at']}  customers "
            f"{m['counts']['customers']:,}  products {m['counts']['products']:,}  "
            f"serves {served} ndcg@{k} {ndcg:.4f}"
        )


def cmd_show(args: argparse.Namespace) -> None:
    from formats import bundle as b

    path = b.resolve(args.model_dir, args.version)
    print(json.dumps(b.read_manifest(path), indent=2, sort_keys=True))


def cmd_promote(args: argparse.Namespace) -> None:
    from formats import bundle as b

    bundle = b.publish(args.model_dir, args.version)
    print(f"published {bundle.version}")


def cmd_rollback(args: argparse.Namespace) -> None:
    from formats import bundle as b

    print(f"published {b.rollback(args.model_dir)}")


def cmd_compare(args: argparse.Namespace) -> None:
    from formats import bundle as b
    from training.bundle_eval import compare_bundles, format_comparison

    def load(name: str) -> b.Bundle:
        path = Path(name) if Path(name).is_dir() else b.resolve(args.model_dir, name)
        return b.load_bundle(path)

    first, second = load(args.a), load(args.b)
    metrics_a, metrics_b, counts = compare_bundles(
        first, second, args.interactions, args.k, args.target_events, args.on_error
    )
    if counts["compared_rows"] == 0:
        raise CliError(
            f"{args.interactions}: no held-out row names a customer and product both bundles "
            "know and neither saw in training; nothing to compare"
        )
    print(format_comparison(first.version, second.version, metrics_a, metrics_b, counts))

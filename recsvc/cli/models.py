"""`recsvc models`: list, show, promote and roll back the bundles in a model directory."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from recsvc.cli.args import add_model_dir

if TYPE_CHECKING:
    from recsvc.cli.args import Subparsers


def register(sub: Subparsers) -> None:
    models = sub.add_parser("models", help="list, show, promote and roll back model bundles")
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

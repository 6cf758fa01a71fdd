"""`recsvc client`: query a running server and print a table (one handler per action)."""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from formats.events import EVENT_TYPES, Event
from recsvc.cli.args import _csv, add_model_dir
from recsvc.cli.common import CliError

if TYPE_CHECKING:
    from formats.types import Recommendation
    from recsvc.cli.args import Subparsers
    from recsvc.client import Client

# What each action does with a connected client and its arguments.
Action = Callable[["Client", argparse.Namespace], None]


def register(sub: Subparsers) -> None:
    cl = sub.add_parser("client", help="query a running server and print a table")
    cl.add_argument(
        "--target",
        default=os.environ.get("RECSVC_TARGET", "localhost:50051"),
        help="server address, or several replicas comma-separated (round robin, UNAVAILABLE "
        "retried elsewhere) (RECSVC_TARGET, default %(default)s)",
    )
    cl.add_argument("--token", help="bearer token (default RECSVC_TOKEN, else the dev token file)")
    cl.add_argument("--ca-cert", type=Path, help="PEM root certificate for TLS")
    add_model_dir(cl)
    csub = cl.add_subparsers(dest="client_command", required=True, metavar="ACTION")

    def action(name: str, run: Action, text: str) -> argparse.ArgumentParser:
        parser = csub.add_parser(name, help=text)
        parser.set_defaults(func=_connected(run))
        return parser

    c = action("recommend", recommend, "personalized products for a customer")
    c.add_argument("--customer", required=True)
    c.add_argument("--limit", type=int, default=10)
    c.add_argument(
        "--category", action="append", default=[], help="only this category (repeatable)"
    )
    c.add_argument("--in-stock", action="store_true", help="only products in stock")
    c.add_argument(
        "--attribute",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="only products whose attribute NAME is VALUE (or holds it; repeatable)",
    )
    c.add_argument(
        "--surface", choices=("home", "product_page", "cart", "checkout"), help="for promotions"
    )
    c.add_argument("--page-token", default="", help="the next page of an earlier answer")
    c = action("similar", similar, "products similar to a product")
    c.add_argument("--product", required=True)
    c.add_argument("--limit", type=int, default=10)
    c = action("rank", rank, "re-rank products for a customer")
    c.add_argument("--customer", required=True)
    c.add_argument("--products", type=_csv, required=True, help="comma-separated product ids")
    action("info", info, "the served model's version, counts and metrics")
    action(
        "reload-experiments",
        reload_experiments,
        "make the server read RECSVC_EXPERIMENTS again (scope admin)",
    )
    c = action("reload", reload, "make the server load CURRENT (or --version)")
    c.add_argument("--version", default="")
    c = action("track", track, "send one event (scope events)")
    c.add_argument("--customer", required=True)
    c.add_argument("--type", required=True, choices=EVENT_TYPES)
    c.add_argument("--product", default="")
    c.add_argument("--offer", default="")
    c.add_argument("--quantity", type=float, default=0.0)
    c.add_argument("--amount", type=float, default=0.0)
    c.add_argument("--recommendation", default="", help="recommendation_id that showed it")
    c.add_argument("--event-id", default="", help="default: a new random id")
    c = action("offers", offers, "the offers most worth showing a customer")
    c.add_argument("--customer", required=True)
    c.add_argument("--limit", type=int, default=3)
    c.add_argument("--surface", choices=("home", "product_page", "cart", "checkout"))
    c.add_argument("--device", default="", help="channel, e.g. ios, web")
    c = action("profile", profile, "a customer's segment, stage, tier, points and value")
    c.add_argument("--customer", required=True)
    c = action("loyalty", loyalty, "set a customer's tier and/or points (scope admin)")
    c.add_argument("--customer", required=True)
    c.add_argument("--tier")
    points = c.add_mutually_exclusive_group()
    points.add_argument("--points", type=float, help="new balance")
    points.add_argument("--add-points", type=float, help="add to the balance (may be negative)")
    c = action("forget", forget, "ForgetCustomer: erase a customer (scope privacy)")
    c.add_argument("--customer", required=True)
    c = action("export-data", export_data, "everything held on a customer, as JSON (privacy)")
    c.add_argument("--customer", required=True)
    c = action(
        "update-product",
        update_product,
        "set a product's stock, price or description; with --category an unknown product is "
        "created (scope admin)",
    )
    c.add_argument("--product", required=True)
    c.add_argument("--stock", type=int)
    c.add_argument("--price", type=float)
    c.add_argument("--title")
    c.add_argument("--category", help="creates the product when the catalog lacks it")
    c.add_argument(
        "--attribute",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a catalog attribute (repeatable; an empty VALUE removes it)",
    )
    c = action("trending", trending, "the products with the most interest now")
    c.add_argument("--category", default="", help="within one category")
    c.add_argument("--limit", type=int, default=10)
    action("reload-promotions", reload_promotions, "reload RECSVC_PROMOTIONS (scope admin)")


def _connected(run: Action) -> Callable[[argparse.Namespace], None]:
    """The handler of one action: connect with the group's options, run it, and report a
    failed RPC in one line (its status code and details) instead of a traceback."""

    def handler(args: argparse.Namespace) -> None:
        import grpc

        from recsvc.client import Client, default_token

        token = args.token or default_token(args.model_dir)
        cert = args.ca_cert.read_bytes() if args.ca_cert else None
        with Client(args.target, token=token, root_cert=cert) as client:
            try:
                run(client, args)
            except grpc.RpcError as exc:
                raise CliError(f"{exc.code().name}: {exc.details()}") from None

    return handler


def recommend(client: Client, args: argparse.Namespace) -> None:
    # formats.types' dataclasses cost --help ~10 ms at import
    from formats.types import AttributeCondition, Context, Filter

    conditions = tuple(AttributeCondition(n, equals=v) for n, v in _pairs(args.attribute))
    f = Filter(
        include_categories=frozenset(args.category),
        in_stock_only=args.in_stock,
        attributes=conditions,
    )
    context = Context(surface=args.surface or "")
    rec = client.recommend(args.customer, args.limit, f, context, page_token=args.page_token)
    _print_recommendation(rec)
    if rec.next_page_token:
        print(f"next page: --page-token {rec.next_page_token}")


def trending(client: Client, args: argparse.Namespace) -> None:
    _print_recommendation(client.trending(args.category, args.limit))


def reload_promotions(client: Client, args: argparse.Namespace) -> None:
    version, promotions, active = client.reload_promotions()
    print(f"promotions {version}: {promotions} promotions, {active} active now")


def _pairs(texts: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise CliError(f"--attribute {text!r}: expected NAME=VALUE")
        pairs.append((name.strip(), value))
    return pairs


def similar(client: Client, args: argparse.Namespace) -> None:
    _print_recommendation(client.similar(args.product, args.limit))


def rank(client: Client, args: argparse.Namespace) -> None:
    _print_recommendation(client.rank(args.customer, list(args.products)))


def info(client: Client, args: argparse.Namespace) -> None:
    print(json.dumps(vars(client.model_info()), indent=2))


def reload_experiments(client: Client, args: argparse.Namespace) -> None:
    version, running, models = client.reload_experiments()
    print(f"experiments file {version}: {running} running; models {', '.join(models)}")


def reload(client: Client, args: argparse.Namespace) -> None:
    changed, version = client.reload(args.version)
    print(f"serving {version}" + (" (reloaded)" if changed else " (unchanged)"))


def track(client: Client, args: argparse.Namespace) -> None:
    event = Event(
        event_id=args.event_id or uuid.uuid4().hex,
        customer_id=args.customer,
        type=args.type,
        product_id=args.product,
        offer_id=args.offer,
        quantity=args.quantity,
        amount=args.amount,
        recommendation_id=args.recommendation,
    )
    (result,) = client.track([event])
    print(f"{result.event_id}: {result.status} {result.reason}".rstrip())


def offers(client: Client, args: argparse.Namespace) -> None:
    from formats.types import Context

    ctx = Context(surface=args.surface or "", device=args.device)
    shown, rec_id, personal = client.offers(args.customer, args.limit, ctx)
    print(f"recommendation {rec_id}  personalized {personal}")
    print(f"{'#':>3}  {'offer':<20}  {'p':>6}  {'EV':>7}  reason / title")
    for n, o in enumerate(shown, 1):
        print(
            f"{n:>3}  {o.offer_id[:20]:<20}  {o.probability:>6.3f}  "
            f"{o.expected_value:>7.3f}  {o.reason} / {o.title}"
        )


def profile(client: Client, args: argparse.Namespace) -> None:
    print(json.dumps(asdict(client.profile(args.customer)), indent=2))


def loyalty(client: Client, args: argparse.Namespace) -> None:
    tier, balance = client.set_loyalty(args.customer, args.tier, args.points, args.add_points)
    print(f"{args.customer}: tier {tier or '-'}, {balance:g} points")


def forget(client: Client, args: argparse.Namespace) -> None:
    keys, events = client.forget(args.customer)
    print(
        f"forgot {args.customer}: {keys} keys and {events} stream events removed; "
        "tombstoned for training and export"
    )


def export_data(client: Client, args: argparse.Namespace) -> None:
    print(client.export_data(args.customer))


def update_product(client: Client, args: argparse.Namespace) -> None:
    from formats.types import ProductChange

    attributes = dict(_pairs(args.attribute))
    change = ProductChange(
        args.product, args.stock, args.price, args.title, args.category, attributes
    )
    print(f"updated {client.update_products([change])} product(s)")


def _print_recommendation(rec: Recommendation) -> None:
    print(
        f"model {rec.model_version}  recommendation {rec.recommendation_id}  "
        f"personalized {rec.personalized}"
        + (f"  experiment {rec.experiment} arm {rec.arm}" if rec.experiment else "")
    )
    width = max([len(i.product_id) for i in rec.items] + [10])
    print(f"{'#':>3}  {'product':<{width}}  {'score':>9}  {'category':<16}  {'slot':<12}  reason")
    for n, item in enumerate(rec.items, 1):
        slot = item.slot + (f" {item.promotion_id}" if item.promotion_id else "")
        print(
            f"{n:>3}  {item.product_id:<{width}}  {item.score:>9.4f}  "
            f"{item.category[:16]:<16}  {slot:<12}  {item.reason}"
        )

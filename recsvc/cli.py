"""The `recsvc` command line: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from formats.events import EVENT_TYPES, INTERACTION_TYPES

if TYPE_CHECKING:
    from feature_store.store import FeatureStore
    from training.analytics import AnalyticsConfig

T = TypeVar("T")

# Before numpy/implicit load: one BLAS thread per process (a fold-in solve is 20x slower otherwise).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

DEFAULT_MODEL_DIR = os.environ.get("RECSVC_MODEL_DIR", "var/models")


class CliError(Exception):
    """An error worth one line on stderr and exit status 2, without a traceback."""


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
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


def _analytics_options(parser: argparse.ArgumentParser, as_of_required: bool) -> None:
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


def _datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _model_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=Path(DEFAULT_MODEL_DIR),
        help="directory of model bundles (env RECSVC_MODEL_DIR; default %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsvc",
        description="Recommendation and personalization engine for retail loyalty.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # data
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
    ml = dsub.add_parser(
        "movielens100k",
        help="write MovieLens-100k in recsvc's input format",
        description="Write MovieLens-100k (every rating a purchase) as interactions.csv and "
        "catalog.csv, from the copy inside the recbole 1.2.1 wheel (downloaded once with pip, "
        "cached under ~/.cache/recsvc).",
    )
    ml.add_argument("--out", type=Path, required=True, help="output directory")
    val = dsub.add_parser("validate", help="check input files and report bad rows")
    _inputs(val, interactions_required=False)

    # train
    train = sub.add_parser(
        "train",
        help="train, evaluate and publish a model bundle",
        description="Read and validate purchase histories, hold out a split, (optionally) tune "
        "ALS on a validation split of the training part, evaluate against popularity and "
        "item-kNN baselines, refit on all data, build the FAISS index and publish a bundle.",
    )
    _inputs(train, interactions_required=True)
    _model_dir(train)
    g = train.add_argument_group("evaluation")
    g.add_argument(
        "--split",
        choices=("temporal", "random"),
        default="temporal",
        help="temporal: last part of each customer's history (default); random",
    )
    g.add_argument("--test-fraction", type=_fraction, default=0.2, help="default %(default)s")
    g.add_argument("--seed", type=int, default=0, help="default %(default)s")
    g.add_argument(
        "-k", type=_positive_int, default=20, help="cut-off for the metrics (default %(default)s)"
    )
    g.add_argument(
        "--target-events",
        type=_events,
        default=("purchase",),
        help="event types to predict in the held-out part (default purchase)",
    )
    g.add_argument(
        "--eval-users",
        type=int,
        default=10_000,
        help="evaluate on a sample of at most this many customers (default %(default)s)",
    )
    g.add_argument(
        "--baselines",
        type=_csv,
        default=("popularity", "itemknn"),
        help="baselines to evaluate (default popularity,itemknn)",
    )
    g.add_argument(
        "--no-refit",
        action="store_true",
        help="publish the model fit on the training part instead of refitting on all data",
    )
    g = train.add_argument_group("model")
    g.add_argument(
        "--tune", action="store_true", help="choose hyperparameters on a validation split"
    )
    g.add_argument(
        "--tune-trials",
        type=int,
        default=0,
        help="random subset of the search space (0 = all of it)",
    )
    g.add_argument("--factors", type=int, default=None)
    g.add_argument("--regularization", type=float, default=None)
    g.add_argument("--alpha", type=float, default=None)
    g.add_argument("--iterations", type=int, default=None)
    g.add_argument("--confidence", choices=("binary", "log", "bm25"), default=None)
    g.add_argument(
        "--event-weights",
        type=_event_weights,
        default=None,
        help="e.g. purchase=1,add_to_cart=0.5,click=0.25,view=0.1",
    )
    g.add_argument(
        "--half-life-days", type=float, default=None, help="recency decay (default none)"
    )
    g = train.add_argument_group("index")
    g.add_argument(
        "--exact-max-items",
        type=int,
        default=None,
        help="exact search up to this many products, HNSW above",
    )
    g.add_argument(
        "--ef-search",
        type=int,
        default=None,
        help="HNSW search beam (default: the cheapest reaching recall 0.97)",
    )
    g.add_argument(
        "--recall-floor",
        type=float,
        default=None,
        help="refuse to publish an ANN index below this recall@k (default 0.95)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument(
        "--no-clv-check",
        action="store_true",
        help="skip the lifetime-value model's calibration/holdout check",
    )

    ev = sub.add_parser(
        "evaluate",
        help="evaluate a bundle on held-out interactions",
        description="Evaluate BUNDLE (a bundle directory, or a version in --model-dir; default the "
        "published one) on a file of held-out interactions; prints ndcg@k, recall@k, map@k, "
        "hitrate@k and coverage@k for the model and the baselines.",
    )
    ev.add_argument("bundle", nargs="?", default=None, help="bundle directory or version")
    ev.add_argument("--interactions", type=Path, required=True)
    _model_dir(ev)
    ev.add_argument("-k", type=_positive_int, default=20)
    ev.add_argument("--target-events", type=_events, default=("purchase",))
    ev.add_argument("--baselines", type=_csv, default=("popularity", "itemknn"))
    ev.add_argument("--on-error", choices=("fail", "skip"), default="fail")

    srv = sub.add_parser(
        "serve",
        help="serve the published model over gRPC",
        description="Serve recsvc.v1 (Recommender, Admin), grpc.health.v1 and reflection. Every "
        "flag defaults to its environment variable (see docs/api.md and recsvc/config.py).",
    )
    _model_dir(srv)
    srv.add_argument("--host", help="listen address (RECSVC_HOST, default 127.0.0.1)")
    srv.add_argument("--port", type=int, help="gRPC port (RECSVC_PORT, default 50051)")
    srv.add_argument(
        "--metrics-port",
        type=int,
        help="Prometheus port (RECSVC_METRICS_PORT, default 9464, 0 = off)",
    )
    srv.add_argument("--workers", type=int, help="processes (RECSVC_WORKERS, default: CPU count)")
    srv.add_argument("--threads", type=int, help="request threads per process (RECSVC_THREADS, 8)")
    srv.add_argument("--tls-cert", type=Path, help="PEM certificate (RECSVC_TLS_CERT)")
    srv.add_argument("--tls-key", type=Path, help="PEM private key (RECSVC_TLS_KEY)")
    srv.add_argument(
        "--reload-interval",
        type=float,
        help="seconds between checks of MODEL_DIR/CURRENT (RECSVC_RELOAD_INTERVAL, 2)",
    )

    cl = sub.add_parser("client", help="query a running server and print a table")
    cl.add_argument(
        "--target",
        default=os.environ.get("RECSVC_TARGET", "localhost:50051"),
        help="server address (RECSVC_TARGET, default %(default)s)",
    )
    cl.add_argument("--token", help="bearer token (default RECSVC_TOKEN, else the dev token file)")
    cl.add_argument("--ca-cert", type=Path, help="PEM root certificate for TLS")
    _model_dir(cl)
    csub = cl.add_subparsers(dest="client_command", required=True, metavar="ACTION")
    c = csub.add_parser("recommend", help="personalized products for a customer")
    c.add_argument("--customer", required=True)
    c.add_argument("--limit", type=int, default=10)
    c.add_argument(
        "--category", action="append", default=[], help="only this category (repeatable)"
    )
    c.add_argument("--in-stock", action="store_true", help="only products in stock")
    c = csub.add_parser("similar", help="products similar to a product")
    c.add_argument("--product", required=True)
    c.add_argument("--limit", type=int, default=10)
    c = csub.add_parser("rank", help="re-rank products for a customer")
    c.add_argument("--customer", required=True)
    c.add_argument("--products", type=_csv, required=True, help="comma-separated product ids")
    csub.add_parser("info", help="the served model's version, counts and metrics")
    c = csub.add_parser("reload", help="make the server load CURRENT (or --version)")
    c.add_argument("--version", default="")
    c = csub.add_parser("track", help="send one event (scope events)")
    c.add_argument("--customer", required=True)
    c.add_argument("--type", required=True, choices=EVENT_TYPES)
    c.add_argument("--product", default="")
    c.add_argument("--offer", default="")
    c.add_argument("--quantity", type=float, default=0.0)
    c.add_argument("--amount", type=float, default=0.0)
    c.add_argument("--recommendation", default="", help="recommendation_id that showed it")
    c.add_argument("--event-id", default="", help="default: a new random id")
    c = csub.add_parser("offers", help="the offers most worth showing a customer")
    c.add_argument("--customer", required=True)
    c.add_argument("--limit", type=int, default=3)
    c.add_argument("--surface", choices=("home", "product_page", "cart", "checkout"))
    c.add_argument("--device", default="", help="channel, e.g. ios, web")
    c = csub.add_parser("profile", help="a customer's segment, stage, tier, points and value")
    c.add_argument("--customer", required=True)
    c = csub.add_parser("loyalty", help="set a customer's tier and/or points (scope admin)")
    c.add_argument("--customer", required=True)
    c.add_argument("--tier")
    points = c.add_mutually_exclusive_group()
    points.add_argument("--points", type=float, help="new balance")
    points.add_argument("--add-points", type=float, help="add to the balance (may be negative)")
    c = csub.add_parser("forget", help="ForgetCustomer: erase a customer (scope privacy)")
    c.add_argument("--customer", required=True)
    c = csub.add_parser("export-data", help="everything held on a customer, as JSON (privacy)")
    c.add_argument("--customer", required=True)
    c = csub.add_parser("update-product", help="set a product's stock and/or price (scope admin)")
    c.add_argument("--product", required=True)
    c.add_argument("--stock", type=int)
    c.add_argument("--price", type=float)

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
    _inputs(f, interactions_required=True)
    _model_dir(f)
    f.add_argument("--chunk", type=_positive_int, default=50_000, help="rows per write")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    _analytics_options(f, as_of_required=False)
    f.add_argument("--no-analytics", action="store_true", help="skip RFM, stages and CLV")
    f = fsub.add_parser("show", help="print the features held for a customer or product")
    _model_dir(f)
    who = f.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer")
    who.add_argument("--product")

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
    _model_dir(e)
    e.add_argument("--chunk", type=_positive_int, default=50_000, help="events per file round")
    e.add_argument("--quiet", action="store_true", help="no progress bar")

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
    _inputs(an, interactions_required=True)
    _analytics_options(an, as_of_required=True)
    an.add_argument("--out", type=Path, required=True, help="FILE.parquet or FILE.csv")
    an.add_argument(
        "--holdout-check",
        action="store_true",
        help="also fit on the first half of the purchase history and report on the second",
    )

    rp = sub.add_parser(
        "report",
        help="campaign funnels per offer and per recommendation source",
        description="Impressions, clicks, conversions, CTR, conversion and redemption rates and "
        "revenue per offer and per recommendation source (RecommendProducts, SimilarProducts, "
        "RankProducts, RecommendOffers: purchases attributed through recommendation_id), over "
        "the events exported by `recsvc events export`.",
    )
    rp.add_argument("--events", type=Path, required=True, help="the export directory")
    rp.add_argument("--from", dest="start", type=_datetime, help="start (ISO date or time, UTC)")
    rp.add_argument("--to", dest="end", type=_datetime, help="end, exclusive (ISO, UTC)")
    rp.add_argument("--format", choices=("table", "csv", "json"), default="table")
    rp.add_argument("--plot", type=Path, help="also draw the funnels to this PNG file")

    models = sub.add_parser("models", help="list, show, promote and roll back model bundles")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    for name, text in (
        ("list", "list bundles, marking the published one"),
        ("show", "print a bundle's manifest"),
        ("promote", "verify a bundle and publish it"),
        ("rollback", "re-publish the previously published bundle"),
    ):
        m = msub.add_parser(name, help=text, description=text)
        _model_dir(m)
        if name in ("show", "promote"):
            m.add_argument(
                "version",
                nargs="?" if name == "show" else None,
                help="bundle version" + (" (default: the published one)" if name == "show" else ""),
            )
    return parser


def _inputs(parser: argparse.ArgumentParser, interactions_required: bool) -> None:
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


def cmd_data(args: argparse.Namespace) -> None:
    if args.data_command == "synth":
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
    elif args.data_command == "movielens100k":
        from training import movielens

        paths = movielens.write(args.out)
        for name, path in paths.items():
            print(f"  {name}: {path}")
    elif args.data_command == "validate":
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


def _with(obj: T, **values: Any) -> T:
    """``obj`` with the fields whose flag was given (not None) replaced."""
    from dataclasses import replace

    return replace(obj, **{k: v for k, v in values.items() if v is not None})  # type: ignore[type-var]


def cmd_train(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from training.config import TrainConfig
    from training.train import run

    cfg = TrainConfig()
    als = _with(
        cfg.als,
        factors=args.factors,
        regularization=args.regularization,
        alpha=args.alpha,
        iterations=args.iterations,
    )
    weights = _with(
        cfg.weights,
        confidence=args.confidence,
        event_weights=args.event_weights,
        half_life_days=args.half_life_days,
    )
    index = _with(
        cfg.index,
        exact_max_items=args.exact_max_items,
        ef_search=args.ef_search,
        recall_floor=args.recall_floor,
    )
    cfg = replace(
        cfg,
        split=args.split,
        test_fraction=args.test_fraction,
        seed=args.seed,
        k=args.k,
        target_events=args.target_events,
        eval_users=args.eval_users,
        baselines=args.baselines,
        refit=not args.no_refit,
        tune=args.tune,
        tune_trials=args.tune_trials,
        als=als,
        weights=weights,
        index=index,
        on_error=args.on_error,
        progress=not args.quiet,
        forget=_tombstones(args.model_dir),
        clv_check=not args.no_clv_check,
    )
    run(args.interactions, args.model_dir, cfg, catalog=args.catalog, customers=args.customers)


def _tombstones(model_dir: Path) -> frozenset[str]:
    """Customers forgotten through ForgetCustomer, when a feature store is configured or the
    embedded one has data; training leaves them out."""
    from feature_store.connection import RedisSettings
    from feature_store.privacy import tombstones

    settings = RedisSettings.from_env(model_dir)
    data = settings.data_dir
    if settings.url is None and not any(data.glob("appendonly.aof*")):
        return frozenset()  # no feature store has ever run here: nobody was forgotten
    with _feature_store(model_dir) as (store, _):
        return frozenset(tombstones(store))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from formats import bundle as b
    from training.bundle_eval import evaluate_bundle
    from training.train import format_table

    path = (
        Path(args.bundle)
        if args.bundle and Path(args.bundle).is_dir()
        else b.resolve(args.model_dir, args.bundle)
    )
    loaded = b.load_bundle(path)
    results, counts = evaluate_bundle(
        loaded, args.interactions, args.k, args.target_events, args.baselines, args.on_error
    )
    print(
        f"bundle {loaded.version}: {counts['customers_evaluated']:,} customers evaluated; "
        f"{counts['rows']:,} target rows, {counts['unknown_customer_or_product']:,} with an "
        f"unknown customer or product, {counts['already_seen']:,} already seen in training"
    )
    print(format_table(results))


def cmd_serve(args: argparse.Namespace) -> None:
    from recsvc.config import ServeConfig
    from recsvc.logs import configure_json
    from recsvc.server import serve

    configure_json(logging.DEBUG if args.verbose else logging.INFO)
    config = ServeConfig.from_env(
        model_dir=args.model_dir,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        workers=args.workers,
        threads=args.threads,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        reload_interval=args.reload_interval,
    )
    serve(config)


def cmd_client(args: argparse.Namespace) -> None:
    import grpc

    from formats.events import Event
    from formats.types import Context, Filter, ProductChange, Recommendation
    from recsvc.client import Client, default_token

    token = args.token or default_token(args.model_dir)
    cert = args.ca_cert.read_bytes() if args.ca_cert else None
    with Client(args.target, token=token, root_cert=cert) as client:
        try:
            action = args.client_command
            rec: Recommendation | None = None
            if action == "recommend":
                f = Filter(include_categories=frozenset(args.category), in_stock_only=args.in_stock)
                rec = client.recommend(args.customer, args.limit, f)
            elif action == "similar":
                rec = client.similar(args.product, args.limit)
            elif action == "rank":
                rec = client.rank(args.customer, list(args.products))
            elif action == "info":
                print(json.dumps(vars(client.model_info()), indent=2))
            elif action == "reload":
                changed, version = client.reload(args.version)
                print(f"serving {version}" + (" (reloaded)" if changed else " (unchanged)"))
            elif action == "track":
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
            elif action == "offers":
                ctx = Context(surface=args.surface or "", device=args.device)
                offers, rec_id, personal = client.offers(args.customer, args.limit, ctx)
                print(f"recommendation {rec_id}  personalized {personal}")
                print(f"{'#':>3}  {'offer':<20}  {'p':>6}  {'EV':>7}  reason / title")
                for n, o in enumerate(offers, 1):
                    print(
                        f"{n:>3}  {o.offer_id[:20]:<20}  {o.probability:>6.3f}  "
                        f"{o.expected_value:>7.3f}  {o.reason} / {o.title}"
                    )
            elif action == "profile":
                print(json.dumps(asdict(client.profile(args.customer)), indent=2))
            elif action == "loyalty":
                tier, balance = client.set_loyalty(
                    args.customer, args.tier, args.points, args.add_points
                )
                print(f"{args.customer}: tier {tier or '-'}, {balance:g} points")
            elif action == "forget":
                keys, events = client.forget(args.customer)
                print(
                    f"forgot {args.customer}: {keys} keys and {events} stream events removed; "
                    "tombstoned for training and export"
                )
            elif action == "export-data":
                print(client.export_data(args.customer))
            elif action == "update-product":
                change = ProductChange(args.product, args.stock, args.price)
                print(f"updated {client.update_products([change])} product(s)")
        except grpc.RpcError as exc:
            raise CliError(f"{exc.code().name}: {exc.details()}") from None
    if rec is not None:
        print(
            f"model {rec.model_version}  recommendation {rec.recommendation_id}  "
            f"personalized {rec.personalized}"
        )
        width = max([len(i.product_id) for i in rec.items] + [10])
        print(f"{'#':>3}  {'product':<{width}}  {'score':>9}  {'category':<16}  reason")
        for n, item in enumerate(rec.items, 1):
            print(
                f"{n:>3}  {item.product_id:<{width}}  {item.score:>9.4f}  "
                f"{item.category[:16]:<16}  {item.reason}"
            )


@contextmanager
def _feature_store(model_dir: Path) -> Iterator[tuple[FeatureStore, str]]:
    """The feature store of these settings (REDIS_URL or the embedded Redis)."""
    from feature_store.connection import RedisSettings, SettingsError, redis_url
    from feature_store.store import FeatureStore

    try:
        settings = RedisSettings.from_env(model_dir)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    with redis_url(settings) as url:
        store = FeatureStore(
            url,
            settings.cluster,
            settings.namespace,
            settings.write_timeout_ms / 1000,
            settings.write_timeout_ms / 1000,
        )
        try:
            yield store, url
        finally:
            store.close()


def cmd_features(args: argparse.Namespace) -> None:
    if args.features_command == "show":
        with _feature_store(args.model_dir) as (store, _):
            if args.customer:
                shown = {"profile": store.profile(args.customer)}
                activity = asdict(store.activity(args.customer))
                del activity["profile"]  # shown above
                activity["purchased"] = sorted(activity["purchased"])
                shown["activity"] = activity
            else:
                shown = {"product": store.product(args.product)}
        print(json.dumps(shown, indent=2, default=str))
        return
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
        analytics=None if args.no_analytics else _analytics_config(args),
        bundle=b.load_bundle(b.resolve(args.model_dir)) if published else None,
    )
    if features.as_of:
        print(
            f"analytics as of {features.as_of} over {args.horizon_days} days: "
            f"{features.customers.height:,} customers"
        )
    with _feature_store(args.model_dir) as (store, url):
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


def cmd_events(args: argparse.Namespace) -> None:
    from feature_store.export import export_events

    with _feature_store(args.model_dir) as (store, _):
        report = export_events(store, args.out, args.chunk, progress=not args.quiet)
    removed = report.removed_orphans
    print(
        f"exported {report.events:,} events into {report.files} files under {args.out} "
        f"(checkpoint {report.checkpoint})"
        + (f"; removed {removed} uncommitted files of an interrupted run" if removed else "")
    )


def _analytics_config(args: argparse.Namespace) -> AnalyticsConfig:
    from training.analytics import AnalyticsConfig, LifecycleRules

    if not args.lifecycle_rules:
        return AnalyticsConfig()
    return AnalyticsConfig(lifecycle=LifecycleRules.parse(args.lifecycle_rules))


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
    config = _analytics_config(args)
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


def cmd_report(args: argparse.Namespace) -> None:
    from training.report import campaign_report, format_table, plot_funnel, read_events

    report = campaign_report(read_events(args.events), args.start, args.end)
    if args.format == "json":
        print(
            json.dumps(
                {"offers": report.offers.to_dicts(), "sources": report.sources.to_dicts()},
                indent=2,
            )
        )
    elif args.format == "csv":
        print("# offers")
        print(report.offers.write_csv(), end="")
        print("# sources")
        print(report.sources.write_csv(), end="")
    else:
        print(f"{report.events:,} events")
        print(format_table(report.offers, "per offer"))
        print(format_table(report.sources, "per recommendation source"))
    if args.plot:
        plot_funnel(report, args.plot)
        print(f"funnel drawn to {args.plot}", file=sys.stderr)


def cmd_models(args: argparse.Namespace) -> None:
    from formats import bundle as b

    action = args.models_command
    if action == "list":
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
            ndcg = ev["models"]["als"][f"ndcg@{k}"]
            print(
                f"{mark} {m['version']}  created {m['created_at']}  customers "
                f"{m['counts']['customers']:,}  products {m['counts']['products']:,}  "
                f"ndcg@{k} {ndcg:.4f}"
            )
    elif action == "show":
        path = b.resolve(args.model_dir, args.version)
        print(json.dumps(b.read_manifest(path), indent=2, sort_keys=True))
    elif action == "promote":
        bundle = b.publish(args.model_dir, args.version)
        print(f"published {bundle.version}")
    elif action == "rollback":
        print(f"published {b.rollback(args.model_dir)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from redis.exceptions import RedisError

    from feature_store.bulk import LoadError
    from formats.bundle import BundleError
    from recsvc.config import ConfigError
    from training.analytics import AnalyticsError
    from training.ingest import InputError, ValidationFailed
    from training.movielens import DownloadError
    from training.report import ReportError
    from training.train import TrainError

    handlers = {
        "data": cmd_data,
        "train": cmd_train,
        "evaluate": cmd_evaluate,
        "models": cmd_models,
        "serve": cmd_serve,
        "client": cmd_client,
        "features": cmd_features,
        "events": cmd_events,
        "report": cmd_report,
        "analytics": cmd_analytics,
    }
    try:
        handlers[args.command](args)
    except (
        CliError,
        InputError,
        ValidationFailed,
        BundleError,
        TrainError,
        ConfigError,
        DownloadError,
        LoadError,
        RedisError,
        ReportError,
        AnalyticsError,
    ) as exc:
        print(f"recsvc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`recsvc train` and `recsvc evaluate`: fit, evaluate and publish model bundles."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from recsvc.cli.args import (
    _csv,
    _event_weights,
    _events,
    _fraction,
    _positive_int,
    _share,
    add_inputs,
    add_model_dir,
)
from recsvc.cli.common import feature_store

if TYPE_CHECKING:
    from recsvc.cli.args import Subparsers
    from training.config import TrainConfig
    from training.engines import ALSEngine

T = TypeVar("T")


def register(sub: Subparsers) -> None:
    _register_train(sub)
    _register_evaluate(sub)


def _register_train(sub: Subparsers) -> None:
    train = sub.add_parser(
        "train",
        help="train, evaluate and publish a model bundle",
        description="Read and validate purchase histories, hold out a split, choose "
        "hyperparameters on a validation split of the training part (the item-to-item "
        "model's always, ALS's with --tune), evaluate ALS, the item-to-item model and their "
        "blend against popularity and item-kNN baselines, serve the best, refit on all data, "
        "build the FAISS index and publish a bundle. A model worse than the serving one on the "
        "same held-out split (by more than --gate-tolerance) is written but not published, and "
        "the command exits with status 2.",
    )
    add_inputs(train, interactions_required=True)
    add_model_dir(train)
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
        "--cold-start-fraction",
        type=_share,
        default=None,
        help="share of products with interactions hidden from an extra fit to measure how "
        "products without history are served (default 0.1; 0 = skip)",
    )
    g.add_argument(
        "--no-refit",
        action="store_true",
        help="publish the model fit on the training part instead of refitting on all data",
    )
    g = train.add_argument_group("model")
    g.add_argument(
        "--engine",
        choices=("implicit", "spark"),
        default="implicit",
        help="what fits ALS: implicit in this process (default) or Spark MLlib "
        "(--spark-master); both publish the same bundle format",
    )
    g.add_argument(
        "--tune", action="store_true", help="choose hyperparameters on a validation split"
    )
    g.add_argument(
        "--tune-trials",
        type=int,
        default=0,
        help="candidates --tune fits (0 = the engine's default: 36 implicit, 12 spark)",
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
    g.add_argument(
        "--sequence-decay",
        type=float,
        default=None,
        help="ALS confidence x exp(d (r - 1)), r = position in the customer's own history "
        "0..1 (default 0: none; --tune chooses it)",
    )
    g = train.add_argument_group("serving")
    g.add_argument(
        "--serve",
        choices=("auto", "als", "item2item", "blend"),
        default="auto",
        help="what RecommendProducts serves (default auto: the best on the held-out split)",
    )
    g.add_argument(
        "--serve-similar",
        choices=("auto", "als", "item2item", "item2vec"),
        default="auto",
        help="what SimilarProducts serves (default auto: the best on the held-out split)",
    )
    g.add_argument(
        "--serve-session",
        choices=("auto", "als", "item2item", "item2vec"),
        default="auto",
        help="what answers customers without history from context.session_product_ids "
        "(default auto: the best on the held-out split)",
    )
    g.add_argument(
        "--no-item2item",
        action="store_true",
        help="do not fit the item-to-item model (ALS alone serves)",
    )
    g.add_argument(
        "--no-item2vec",
        action="store_true",
        help="do not fit item2vec (it is evaluated by default up to 100k products and 5M "
        "interactions, and serves only where it wins)",
    )
    g = train.add_argument_group("spark (with --engine spark)")
    g.add_argument(
        "--spark-master",
        default=os.environ.get("RECSVC_SPARK_MASTER", "local[*]"),
        help="local[*], local[N], spark://HOST:PORT, yarn or k8s://URL "
        "(env RECSVC_SPARK_MASTER, default %(default)s)",
    )
    g.add_argument(
        "--spark-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting, e.g. spark.executor.memory=8g (repeatable)",
    )
    g.add_argument(
        "--spark-blocks",
        type=_positive_int,
        default=None,
        help="ALS user and item blocks (default: Spark's default parallelism)",
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
    g = train.add_argument_group("publish gate")
    g.add_argument(
        "--gate-tolerance",
        type=_tolerance,
        default=0.02,
        help="do not publish a model more than this much worse than the serving one, "
        "relative NDCG@k on the same held-out split (default %(default)s = 2%%)",
    )
    g.add_argument(
        "--force",
        action="store_true",
        help="publish even when the new model is worse than the serving one",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument(
        "--no-clv-check",
        action="store_true",
        help="skip the lifetime-value model's calibration/holdout check",
    )
    train.set_defaults(func=cmd_train)


def _register_evaluate(sub: Subparsers) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="evaluate a bundle on held-out interactions",
        description="Evaluate BUNDLE (a bundle directory, or a version in --model-dir; default the "
        "published one) on a file of held-out interactions; prints ndcg@k, recall@k, map@k, "
        "hitrate@k and coverage@k for the model and the baselines.",
    )
    ev.add_argument("bundle", nargs="?", default=None, help="bundle directory or version")
    ev.add_argument("--interactions", type=Path, required=True)
    add_model_dir(ev)
    ev.add_argument("-k", type=_positive_int, default=20)
    ev.add_argument("--target-events", type=_events, default=("purchase",))
    ev.add_argument("--baselines", type=_csv, default=("popularity", "itemknn"))
    ev.add_argument("--on-error", choices=("fail", "skip"), default="fail")
    ev.set_defaults(func=cmd_evaluate)


def _tolerance(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), e.g. 0.02 for 2%, got {text}")
    return value


def _with(obj: T, **values: Any) -> T:
    """``obj`` with the fields whose flag was given (not None) replaced."""
    from dataclasses import replace

    return replace(obj, **{k: v for k, v in values.items() if v is not None})  # type: ignore[type-var]


def cmd_train(args: argparse.Namespace) -> None:
    from training.config import TrainConfig
    from training.train import run

    with _engine(args) as engine:
        cfg = TrainConfig(als=engine.defaults, weights=engine.weights)
        cfg = _configure(cfg, args)
        run(
            args.interactions,
            args.model_dir,
            cfg,
            catalog=args.catalog,
            customers=args.customers,
            engine=engine,
        )


@contextmanager
def _engine(args: argparse.Namespace) -> Iterator[ALSEngine]:
    """The engine --engine names; a Spark session lives as long as the run."""
    from training.engines import implicit_engine

    if args.engine != "spark":
        yield implicit_engine()
        return
    from training.spark import SparkSettings, parse_conf, spark_engine, spark_session

    settings = SparkSettings(
        master=args.spark_master, conf=parse_conf(args.spark_conf), progress=not args.quiet
    )
    with spark_session(settings) as session:
        yield spark_engine(session, args.spark_blocks or 0)


def _configure(cfg: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """``cfg`` (the engine's defaults) with the command line's options applied."""
    from dataclasses import replace

    from training.gate import GateConfig

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
        sequence_decay=args.sequence_decay,
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
        cold_start=_with(cfg.cold_start, fraction=args.cold_start_fraction, seed=args.seed),
        gate=GateConfig(tolerance=args.gate_tolerance, force=args.force),
        use_item2item=not args.no_item2item,
        use_item2vec=not args.no_item2vec,
        serve=args.serve,
        serve_similar=args.serve_similar,
        serve_session=args.serve_session,
    )
    return cfg


def _tombstones(model_dir: Path) -> frozenset[str]:
    """Customers forgotten through ForgetCustomer, when a feature store is configured or the
    embedded one has data; training leaves them out."""
    from feature_store.connection import RedisSettings
    from feature_store.privacy import tombstones

    settings = RedisSettings.from_env(model_dir)
    data = settings.data_dir
    if settings.url is None and not any(data.glob("appendonly.aof*")):
        return frozenset()  # no feature store has ever run here: nobody was forgotten
    with feature_store(model_dir) as (store, _):
        return frozenset(tombstones(store))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from formats import bundle as b
    from training.bundle_eval import evaluate_bundle
    from training.evaluation import format_table

    path = (
        Path(args.bundle)
        if args.bundle and Path(args.bundle).is_dir()
        else b.resolve(args.model_dir, args.bundle)
    )
    loaded = b.load_bundle(path)
    results, counts, served = evaluate_bundle(
        loaded, args.interactions, args.k, args.target_events, args.baselines, args.on_error
    )
    print(
        f"bundle {loaded.version}: {counts['customers_evaluated']:,} customers evaluated; "
        f"{counts['rows']:,} target rows, {counts['unknown_customer_or_product']:,} with an "
        f"unknown customer or product, {counts['already_seen']:,} already seen in training"
    )
    print(format_table(results, marks={served: "served"}))

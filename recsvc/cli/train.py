"""`recsvc train` and `recsvc evaluate`: fit, evaluate and publish model bundles."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from recsvc.cli.args import (
    _csv,
    _event_weights,
    _events,
    _fraction,
    _positive_int,
    add_inputs,
    add_model_dir,
)
from recsvc.cli.common import feature_store

if TYPE_CHECKING:
    from recsvc.cli.args import Subparsers

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
        "build the FAISS index and publish a bundle.",
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
        use_item2item=not args.no_item2item,
        use_item2vec=not args.no_item2vec,
        serve=args.serve,
        serve_similar=args.serve_similar,
        serve_session=args.serve_session,
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

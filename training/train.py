"""The offline pipeline: read, validate, split, (tune), fit, evaluate, refit, index, publish."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm import tqdm

from formats import __version__
from formats.bundle import BundleContents, new_version, publish, write_bundle
from formats.errors import RecsvcError
from formats.history import SEQUENCE
from training.cold_start import evaluate_cold_start, format_cold_start
from training.compare import compare, fit_models
from training.config import TrainConfig
from training.content import bundle_content
from training.dataset import (
    binary_matrix,
    build_dataset,
    catalog_from_interactions,
    confidence_matrix,
    summarize,
)
from training.engines import ALSEngine, implicit_engine
from training.evaluation import baseline_warning, format_table
from training.gate import GateResult, compare_with_serving
from training.index import build_index, index_kind, tune_ef_search
from training.ingest import (
    ValidationReport,
    read_catalog,
    read_customers,
    read_interactions,
)
from training.sessions import sequences
from training.split import make_split, sample_users
from training.tune import Item2ItemTrial, Trial, tune, tune_item2item

log = logging.getLogger(__name__)


class TrainError(RecsvcError):
    """Training finished but its result must not be published."""


class GateError(TrainError):
    """The new model is worse than the serving one: written, not published."""

    def __init__(self, message: str, version: str, gate: GateResult) -> None:
        super().__init__(message)
        self.version = version
        self.gate = gate


@dataclass
class TrainResult:
    version: str
    path: Path
    manifest: dict[str, Any]


@dataclass
class Phases:
    """Named phases with wall times, shown as one progress bar."""

    bar: tqdm[Any]
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.bar.set_description(name)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        log.info("%s done in %.1f s", name, self.seconds[name])
        self.bar.update(1)


CLV_CHECK_CUSTOMERS = 100_000  # a random sample of this many at most (400,000: 153 s at 20M)


def clv_check(interactions: pl.DataFrame, seed: int = 0) -> tuple[str, dict[str, Any]] | None:
    """The lifetime-value model's holdout check: (printed report, manifest entry), or None
    when the history cannot support one (too few purchases or repeat buyers). Above
    ``CLV_CHECK_CUSTOMERS`` customers it checks a random sample of them, whole histories."""
    from training.analytics import AnalyticsError, holdout_check, holdout_split

    customers = interactions["customer_id"].unique()
    if len(customers) > CLV_CHECK_CUSTOMERS:
        sample = customers.sample(CLV_CHECK_CUSTOMERS, seed=seed)
        interactions = interactions.filter(pl.col("customer_id").is_in(sample.implode()))
    try:
        calibration_end, holdout_end = holdout_split(interactions)
        report = holdout_check(interactions, calibration_end, holdout_end)
    except AnalyticsError as exc:
        log.warning("no CLV holdout check: %s", exc)
        return None
    entry = {
        "calibration_end": report.calibration_end.isoformat(),
        "holdout_end": report.holdout_end.isoformat(),
        "customers": report.customers,
        "model": report.chosen,
        "actual_repeat_purchases": report.actual,
        "predicted_repeat_purchases": report.predicted,
        "relative_error": report.relative_error,
        "correlation": report.correlation,
    }
    return report.format(), entry


def fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    files = [
        f
        for p in paths
        for f in (sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p])
    ]
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def run(
    interactions: Path,
    model_dir: Path,
    cfg: TrainConfig,
    catalog: Path | None = None,
    customers: Path | None = None,
    echo: Callable[[str], None] = print,
    engine: ALSEngine | None = None,
) -> TrainResult:
    """Train, evaluate and publish one bundle; returns its version and manifest.

    ``engine`` fits ALS (default: implicit in this process; training.spark: Spark MLlib);
    every other step is the same whatever the engine.
    """
    engine = engine or implicit_engine()
    phases = [
        *("read", "split", "tune", "fit", "evaluate", "gate", "cold start", "refit"),
        *("content", "index", "clv", "publish"),
    ]
    bar = tqdm(total=len(phases), unit="phase", disable=not cfg.progress, leave=False)
    p = Phases(bar)
    reports: list[ValidationReport] = []
    with p.phase("read"):
        frame, report = read_interactions(interactions, cfg.on_error)
        reports.append(report)
        if catalog is not None:
            cat, report = read_catalog(catalog, cfg.on_error)
            reports.append(report)
        else:
            cat = catalog_from_interactions(frame)
        excluded = set(cfg.forget)
        if customers is not None:
            people, report = read_customers(customers, cfg.on_error)
            reports.append(report)
            declined = people.filter(pl.col("consent_personalization").eq(False))
            excluded.update(declined["customer_id"].to_list())
        if excluded:
            before = frame.height
            frame = frame.filter(~pl.col("customer_id").is_in(list(excluded)))
            left_out = before - frame.height
        else:
            left_out = 0
        ds, unknown = build_dataset(frame, cat)
        frame_for_clv = frame.select("customer_id", "timestamp", "event_type", "amount")
        del frame
        if ds.n_rows == 0:
            raise TrainError(f"{interactions}: no usable interactions")
    for r in reports:
        echo(r.summary())
    if unknown:
        echo(f"{interactions}: dropped {unknown:,} rows naming a product not in the catalog")
    if left_out:
        echo(
            f"left out {left_out:,} rows of {len(excluded):,} customers who were forgotten or "
            "declined personalization"
        )

    with p.phase("split"):
        split = make_split(ds, cfg.split, cfg.test_fraction, cfg.seed, cfg.target_events)
        users = sample_users(split.eval_users, cfg.eval_users, cfg.seed)
    if len(users) == 0:
        raise TrainError(
            "the held-out split has no customer with a product to predict; "
            "give more history per customer or a larger --test-fraction"
        )

    weights, als_params, i2i_params = cfg.weights, cfg.als, cfg.item2item
    use_i2i = cfg.use_item2item and i2i_params.fits(ds.n_items, ds.n_rows)
    if cfg.use_item2item and not use_i2i:
        echo(
            f"item-to-item model not fitted: {ds.n_items:,} products and {ds.n_rows:,} "
            f"interactions are above its limits ({i2i_params.max_items:,} products, "
            f"{i2i_params.max_interactions:,} interactions); ALS alone serves"
        )
    trials: list[Trial] = []
    i2i_trials: list[Item2ItemTrial] = []
    with p.phase("tune"):
        if cfg.tune:
            weights, als_params, trials = tune(
                split.train,
                cfg,
                progress=cfg.progress,
                echo=echo,
                new_model=engine.new_model,
                space=engine.space,
                default_trials=engine.tune_trials,
            )
        if use_i2i:
            i2i_params, i2i_trials = tune_item2item(split.train, cfg, weights, echo=echo)

    with p.phase("fit"):
        summary = summarize(split.train, weights)
        fitted = fit_models(
            split,
            summary,
            users,
            cfg,
            weights,
            als_params,
            i2i_params if use_i2i else None,
            engine.new_model,
        )

    with p.phase("evaluate"):
        try:
            comparison = compare(fitted, split, users, cfg)
        except ValueError as exc:
            raise TrainError(str(exc)) from exc
    choice = comparison.choice
    inputs = [x for x in (interactions, catalog, customers) if x is not None]
    evaluation: dict[str, Any] = {
        "split": cfg.split,
        "test_fraction": cfg.test_fraction,
        "seed": cfg.seed,
        "k": cfg.k,
        "target_events": list(cfg.target_events),
        "customers_evaluated": len(users),
        "models": comparison.metrics,
        "similar_products": comparison.similar,
        "sessions": comparison.sessions,
    }
    with p.phase("gate"):
        fp = fingerprint(inputs)
        gate = compare_with_serving(
            model_dir,
            evaluation,
            fp,
            comparison.metrics,
            ds,
            split,
            fitted.scorer_of(choice.model, choice.beta),
            users,
            cfg.gate,
            choice.model,
        )
    als, i2i, i2v = fitted.als, fitted.item2item, fitted.item2vec
    matrix = fitted.matrix
    del fitted, split

    with p.phase("cold start"):
        cold: dict[str, Any] | None = None
        if cfg.cold_start.fraction > 0:
            cold = evaluate_cold_start(ds, weights, als_params, cfg.content, cfg.cold_start)

    with p.phase("refit"):
        if cfg.refit:
            summary = summarize(ds, weights)
            matrix = confidence_matrix(summary, weights)
            refit = engine.new_model(als_params)
            if engine.warm_starts:
                refit.fit(matrix, cfg.progress, warm_start=als, iterations=cfg.refit_iterations)
            else:
                refit.fit(matrix, cfg.progress)
            als = refit
        extras = {SEQUENCE: summary.extra()}
        if i2i is not None and comparison.uses("item2item"):
            if cfg.refit:
                i2i.fit(matrix, progress=cfg.progress)
            extras["item2item"] = i2i.extra()
        if i2v is not None and comparison.uses("item2vec"):
            if cfg.refit:
                i2v.fit_sequences(sequences(ds), ds.n_items, cfg.progress)
            extras["item2vec"] = i2v.extra()
        popularity = np.bincount(
            binary_matrix(ds.user, ds.item, (ds.n_users, ds.n_items)).indices, minlength=ds.n_items
        ).astype(np.float32)

    with p.phase("content"):
        item_factors, content_extras, content_info = bundle_content(
            ds.catalog, als.item_factors, matrix, ds.item, ds.ts, cfg.content
        )
        extras.update(content_extras)
        als.item_factors = item_factors
    content_info["cold_start_evaluation"] = cold

    with p.phase("index"):
        index = build_index(als.item_factors, cfg.index)
        rng = np.random.default_rng(cfg.seed)
        n_q = min(cfg.index.recall_sample, ds.n_users)
        queries = np.vstack(
            [
                als.user_factors[rng.choice(ds.n_users, size=n_q, replace=False)],
                als.item_factors[rng.choice(ds.n_items, size=min(n_q, ds.n_items), replace=False)],
            ]
        )
        recall = tune_ef_search(index, als.item_factors, queries, cfg.index)
    index_info = {
        "kind": index_kind(index),
        "metric": "inner_product",
        "params": asdict(cfg.index),
        "ef_search": int(index.hnsw.efSearch) if index_kind(index) == "hnsw" else None,
        "recall_k": cfg.index.recall_k,
        "recall": recall,
        "recall_queries": len(queries),
    }
    if recall < cfg.index.recall_floor:
        raise TrainError(
            f"ANN index recall@{cfg.index.recall_k} {recall:.3f} is below the floor "
            f"{cfg.index.recall_floor}; not publishing (raise --ef-search or --exact-max-items)"
        )

    with p.phase("clv"):
        clv = clv_check(frame_for_clv, cfg.seed) if cfg.clv_check else None
    del frame_for_clv

    with p.phase("publish"):
        products = ds.catalog.with_columns(pl.Series("popularity", popularity))
        manifest: dict[str, Any] = {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "recsvc_version": __version__,
            "model": choice.model,
            "engine": engine.name,
            "engine_info": engine.info,
            # What serves each request kind (docs/bundle-format.md): recommend is als,
            # item2item or blend; similar is als or item2item.
            "serving": comparison.serving,
            "input": {
                "fingerprint": fp,
                "files": [str(x) for x in inputs],
                "validation": [
                    {
                        "file": r.file,
                        "rows_read": r.rows_read,
                        "rows_kept": r.rows_kept,
                        "dropped": r.dropped,
                    }
                    for r in reports
                ],
                "unknown_product_rows": unknown,
                "excluded_customer_rows": left_out,
            },
            "counts": {"customers": ds.n_users, "products": ds.n_items, "interactions": ds.n_rows},
            # Real-time fold-in counts only events after the last one trained on (seconds
            # resolution here, so the whole last second counts as trained).
            "data": {
                "first_event_ms": int(ds.ts.min()) * 1000,
                "last_event_ms": int(ds.ts.max()) * 1000 + 999,
            },
            "params": {
                "als": als_params.to_dict(),
                "weights": weights.to_dict(),
                "item2item": (
                    {**i2i_params.to_dict(), "kind": i2i.kind, "blend_beta": choice.beta}
                    if i2i is not None
                    else None
                ),
                "item2vec": (
                    # Sessions weigh their products with the item-to-item query's decay.
                    {**cfg.item2vec.to_dict(), "session_decay": i2i.params.decay if i2i else 0.0}
                    if i2v is not None
                    else None
                ),
                "tuned": cfg.tune,
                "refit_on_all_data": cfg.refit,
            },
            "evaluation": evaluation,
            "gate": {**gate.to_dict(), "forced": cfg.gate.force and not gate.passed},
            "content": content_info,
            "tuning": [t.to_dict() for t in trials],
            "tuning_item2item": [t.to_dict() for t in i2i_trials],
            "clv_holdout": clv[1] if clv else None,
            "index": index_info,
            "timings_s": p.seconds,
        }
        version = new_version(fp, model_dir)
        contents = BundleContents(
            manifest=manifest,
            customer_ids=ds.customer_ids,
            products=products,
            user_factors=als.user_factors,
            item_factors=als.item_factors,
            user_items=matrix,
            index=index,
            extras=extras,
        )
        path = write_bundle(model_dir, contents, version)
        publishing = gate.passed or cfg.gate.force
        bundle = publish(model_dir, version) if publishing else None
    bar.close()
    echo(
        format_table(
            comparison.metrics,
            f"held-out evaluation ({cfg.split} split, {len(users):,} customers, k={cfg.k}):",
            {choice.model: "served"},
        )
    )
    served = comparison.similar_model
    echo(
        format_table(
            comparison.similar,
            "similar products (query: each customer's last product):",
            {"als_inner_product" if served == "als" else served: "served"},
        )
    )
    if comparison.sessions:
        echo(
            format_table(
                comparison.sessions,
                "anonymous sessions (each customer's last products, no account):",
                {comparison.session_model: "served"},
            )
        )
    echo(
        f"content model: {content_info['features']:,} features from "
        f"{content_info['fitted_on']:,} products with interactions; "
        f"{content_info['products_with_content_vectors']:,} products without any got their "
        "vectors from it"
    )
    if cold is not None:
        echo(format_cold_start(cold))
    echo(
        f"index: {index_info['kind']} inner product over {ds.n_items:,} products, "
        f"recall@{cfg.index.recall_k} vs exact {recall:.3f}"
        + (f" (efSearch {index_info['ef_search']})" if index_info["ef_search"] else "")
    )
    if clv is not None:
        echo(clv[0])
    echo(gate.summary())
    warning = baseline_warning(choice, comparison.metrics, cfg.k)
    if warning:
        log.warning("a baseline beats the served model: %s", choice.winner_baseline)
        echo(warning)
    if bundle is None:
        raise GateError(refusal(gate, version, model_dir), version, gate)
    forced = " (forced past the gate)" if not gate.passed else ""
    echo(
        f"published {version} to {model_dir}{forced} "
        f"(ALS by {engine.name}, {sum(p.seconds.values()):.1f} s)"
    )
    return TrainResult(version=version, path=path, manifest=bundle.manifest)


def refusal(gate: GateResult, version: str, model_dir: Path) -> str:
    """Why a bundle was not published, both figures, and how to publish it anyway."""
    return (
        f"not published: the new model {version} is worse than the serving model by more "
        f"than the {gate.tolerance:.0%} tolerance: {gate.figures()} ({gate.basis}). It is "
        f"written to {model_dir / version}; to publish it anyway rerun with --force or run "
        f"`recsvc models promote {version} --model-dir {model_dir}`"
    )

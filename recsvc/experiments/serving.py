"""Experiments in one serving worker: the file in force, the engines its arms serve, and which
engine answers a call.

Every worker serves every version the arms name at once, sharing what can be shared: a
version is loaded once however many arms name it (arms with engine options get a view of the
same model, ``Engine.with_config``), the version CURRENT names is the model store's own engine,
and a version the store publishes later is handed over rather than loaded twice
(``ModelStore.reuse``). A reload loads new versions beside the serving ones and swaps one
reference; a file that fails validation, or names a version that cannot be loaded, is refused
and the experiments in force keep serving. The file is also polled every reload interval, so
the workers that did not answer a ReloadExperiments call follow within that interval.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from formats import bundle as bundles
from formats.attribution import parse
from formats.errors import Unavailable
from recsvc.engine import Engine
from recsvc.experiments.assignment import assign
from recsvc.experiments.spec import (
    NO_EXPERIMENTS,
    ExperimentsError,
    ExperimentsFile,
    load_experiments,
)
from recsvc.model_store import ModelStore

log = logging.getLogger(__name__)
Options = tuple[tuple[str, int | bool], ...]


@dataclass(frozen=True)
class Route:
    """The engine that answers a call, and the experiment arm that chose it ("" = none)."""

    engine: Engine
    experiment: str = ""
    arm: str = ""


@dataclass(frozen=True)
class _InForce:
    config: ExperimentsFile
    engines: dict[str, Engine] = field(default_factory=dict)  # arm versions -> engine


class Experiments:
    def __init__(self, path: Path | None, store: ModelStore) -> None:
        self.path = path
        self.store = store
        self._in_force = _InForce(NO_EXPERIMENTS)
        self._lock = threading.Lock()  # one reload at a time; readers never take it
        self._views: weakref.WeakKeyDictionary[Engine, dict[Options, Engine]] = (
            weakref.WeakKeyDictionary()
        )
        self._refused: str | None = None  # digest of a file refused (not retried unchanged)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        store.reuse = self._loaded_engine

    @property
    def config(self) -> ExperimentsFile:
        return self._in_force.config

    def reload(self) -> ExperimentsFile:
        """Load the file again; ExperimentsError (every problem) keeps the one in force."""
        if self.path is None:
            raise Unavailable("no experiments file is configured: set RECSVC_EXPERIMENTS")
        with self._lock:
            try:
                config = load_experiments(self.path)
                engines = self._engines_for(config)
            except ExperimentsError as exc:
                self._refused = _digest(self.path)
                log.error("refused experiments file (the one in force stays):\n%s", exc)
                raise
            self._in_force = _InForce(config, engines)
            self._refused = None
        running = [e.name for e in config.experiments if e.enabled]
        log.info(
            "experiments %s (version %s): %s; models %s",
            self.path,
            config.digest[:12],
            ", ".join(running) or "none enabled",
            ", ".join(config.versions) or "current only",
        )
        return config

    def _engines_for(self, config: ExperimentsFile) -> dict[str, Engine]:
        """An engine per arm version: kept from the config in force, the store's own when it
        serves that version, else loaded beside (ExperimentsError naming the arms)."""
        old = self._in_force.engines
        current = self.store.loaded
        engines: dict[str, Engine] = {}
        errors: list[str] = []
        for version in config.versions:
            if version in old:
                engines[version] = old[version]
            elif current is not None and current.version == version:
                engines[version] = current
            else:
                try:
                    path = bundles.resolve(self.store.model_dir, version)
                    engines[version] = Engine.load(path, self.store.config)
                except bundles.BundleError as exc:
                    arms = [
                        f"experiments[{i}] ({e.name}): arms[{j}] ({a.name})"
                        for i, e in enumerate(config.experiments)
                        for j, a in enumerate(e.arms)
                        if a.model == version
                    ]
                    errors.extend(f"{config.source}: {arm}: model: {exc}" for arm in arms)
        if errors:
            raise ExperimentsError(errors)
        return engines

    def _loaded_engine(self, version: str) -> Engine | None:
        """An engine of ``version`` an arm already serves (for the store: no second copy)."""
        return self._in_force.engines.get(version)

    # -- requests -------------------------------------------------------------------------
    def route(self, rpc: str, unit: str) -> Route:
        """Who answers ``rpc`` for ``unit`` (the customer; the product for SimilarProducts)."""
        in_force = self._in_force
        experiment = in_force.config.for_rpc(rpc)
        arm = assign(experiment, unit) if experiment is not None else None
        if experiment is None or arm is None:
            return Route(self.store.engine)
        engine = self.store.engine if arm.follows_current else in_force.engines[arm.model]
        if arm.options:
            engine = self._view(engine, arm.options)
        return Route(engine, experiment.name, arm.name)

    def _view(self, engine: Engine, options: Options) -> Engine:
        views = self._views.get(engine)
        if views is None:
            views = self._views.setdefault(engine, {})
        view = views.get(options)
        if view is None:
            settings: dict[str, Any] = dict(options)
            view = views.setdefault(options, engine.with_config(replace(engine.config, **settings)))
        return view

    def labels(self, recommendation_id: str) -> tuple[str, str, str] | None:
        """(model_version, experiment, arm) of a recommendation_id for the metrics of tracked
        events, or None when it is not one of ours. The version is the one the arm names in
        the file in force (CURRENT's for calls outside experiments); "unknown" for an arm the
        file no longer has."""
        attribution = parse(recommendation_id)
        if not attribution.source:
            return None
        current = self.store.loaded
        serving = current.version if current is not None else "unknown"
        if not attribution.experiment:
            return serving, "", ""
        experiment = self.config.experiment(attribution.experiment)
        arm = experiment.arm(attribution.arm) if experiment is not None else None
        version = "unknown" if arm is None else serving if arm.follows_current else arm.model
        return version, attribution.experiment, attribution.arm

    # -- following the file ---------------------------------------------------------------
    def watch(self, interval: float) -> None:
        """Poll the file in a daemon thread; reload when its bytes change."""
        if self.path is None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                digest = _digest(self.path) if self.path is not None else None
                if digest is None or digest in (self.config.digest, self._refused):
                    continue
                # A refusal is logged in reload(); tried again when the file changes again.
                with contextlib.suppress(ExperimentsError, Unavailable):
                    self.reload()

        self._watcher = threading.Thread(target=loop, name="experiments-watcher", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None

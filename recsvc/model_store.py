"""Which engine is serving, and swapping in a new one without failing a call.

A request takes ``store.engine`` once and keeps that reference, so a swap never changes the
model under a call in flight; the old engine is freed when its last call returns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from formats import bundle as bundles
from formats.errors import Unavailable
from recsvc.engine import Engine, EngineConfig

log = logging.getLogger(__name__)
ReloadHook = Callable[[str, str], None]  # (outcome, version)


class ModelStore:
    def __init__(
        self,
        model_dir: Path,
        config: EngineConfig | None = None,
        on_reload: ReloadHook | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.config = config or EngineConfig()
        self._engine: Engine | None = None
        self._lock = threading.Lock()  # one load at a time; readers never take it
        self._on_reload = on_reload or (lambda outcome, version: None)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        # An engine of a version already loaded elsewhere (an experiment arm), to publish
        # without loading it a second time.
        self.reuse: Callable[[str], Engine | None] = lambda version: None

    @property
    def engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            raise Unavailable(f"no model loaded from {self.model_dir} yet; train one first")
        return engine

    @property
    def loaded(self) -> Engine | None:
        """The serving engine, or None before the first load (for calls that need no model)."""
        return self._engine

    def reload(self, version: str | None = None) -> tuple[bool, str]:
        """Load ``version`` (default: CURRENT) beside the serving engine and swap it in.

        Raises ``BundleError`` and keeps the old engine when the new one fails to load.
        """
        with self._lock:
            target = version or bundles.current_version(self.model_dir)
            if target is None:
                raise bundles.BundleError(f"{self.model_dir}: no published model (no CURRENT)")
            if self._engine is not None and self._engine.version == target:
                return False, target
            try:
                engine = self.reuse(target) or Engine.load(
                    bundles.resolve(self.model_dir, target), self.config
                )
            except bundles.BundleError:
                self._on_reload("failed", target)
                serving = self._engine.version if self._engine else "none"
                log.exception("refused model %s; still serving %s", target, serving)
                raise
            old = self._engine.version if self._engine else None
            self._engine = engine
            self._on_reload("loaded", target)
            log.info("now serving model %s (was %s)", target, old)
            return True, target

    def watch(self, interval: float = 2.0) -> None:
        """Poll CURRENT in a daemon thread and reload when it names another version."""

        def loop() -> None:
            while not self._stop.wait(interval):
                current = bundles.current_version(self.model_dir)
                if current is None or (self._engine and self._engine.version == current):
                    continue
                try:
                    self.reload(current)
                except bundles.BundleError:
                    # Logged in reload(); try again only when CURRENT changes again.
                    self._wait_for_change(current, interval)

        self._watcher = threading.Thread(target=loop, name="model-watcher", daemon=True)
        self._watcher.start()

    def _wait_for_change(self, bad: str, interval: float) -> None:
        while not self._stop.wait(interval):
            if bundles.current_version(self.model_dir) != bad:
                return

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)

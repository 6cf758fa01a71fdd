"""What the command handlers share beyond arguments: the CLI's own error, the feature store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from formats.errors import RecsvcError

if TYPE_CHECKING:
    from feature_store.store import FeatureStore


class CliError(RecsvcError):
    """An error worth one line on stderr and exit status 2, without a traceback."""


@contextmanager
def feature_store(model_dir: Path) -> Iterator[tuple[FeatureStore, str]]:
    """The feature store of these settings (REDIS_URL or the embedded Redis)."""
    from feature_store.connection import RedisSettings, redis_url
    from feature_store.store import FeatureStore

    settings = RedisSettings.from_env(model_dir)  # a bad one is a SettingsError, a RecsvcError
    with redis_url(settings) as url:
        store = FeatureStore(
            url,
            settings.cluster,
            settings.namespace,
            settings.write_timeout_ms / 1000,
            settings.write_timeout_ms / 1000,
            wait_replicas=settings.wait_replicas,
            wait_timeout_s=settings.wait_timeout_ms / 1000,
        )
        try:
            yield store, url
        finally:
            store.close()

"""Fixtures of the reliability suite (tests/reliability, docs/reliability.md).

Tests marked ``long`` (soak, overload, many fuzzed examples) run only in
`make test-reliability`; pyproject's addopts leaves them out of `make test`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from serving_fixtures import add_copy, trained

VERSION = "20260101T000000Z-served"


@pytest.fixture
def served_models(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory of this test alone (var/models), the shared trained bundle
    published in it; the embedded Redis goes beside it (var/redis)."""
    model_dir = tmp_path / "var" / "models"
    add_copy(model_dir, trained(tmp_path_factory, "exact"), VERSION, publish=True)
    return model_dir

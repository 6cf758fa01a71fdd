"""Structure rules that no linter checks: one job per module means small modules."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("recsvc", "training", "feature_store", "formats", "bench")
GENERATED = ("recsvc/v1/",)
MAX_LINES = 600


def test_no_source_file_is_over_600_lines() -> None:
    long = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith(GENERATED):
                continue
            lines = len(path.read_text().splitlines())
            if lines > MAX_LINES:
                long[relative] = lines
    assert not long, f"split these by job (at most {MAX_LINES} lines each): {long}"


def test_the_bottom_layer_imports_no_other_recsvc_package() -> None:
    # Also an import-linter layer; this names the offending line when it breaks.
    for path in (ROOT / "formats").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            for package in ("recsvc", "training", "feature_store"):
                assert not stripped.startswith((f"from {package}", f"import {package}")), (
                    f"{path.relative_to(ROOT)}:{number}: {stripped}"
                )

"""`recsvc analytics`, tier rules and the model's top categories."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsvc.cli import main
from training import synth
from training.analytics import (
    AnalyticsError,
    LifecycleRules,
    TierRules,
    derive_tiers,
    vector_top_categories,
)


def _purchases(rows: list[tuple[str, str, float]]) -> pl.DataFrame:
    """(customer, ISO day, amount) purchases."""
    return pl.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "product_id": ["P1"] * len(rows),
            "timestamp": [datetime.fromisoformat(r[1]).replace(tzinfo=UTC) for r in rows],
            "event_type": ["purchase"] * len(rows),
            "quantity": [1.0] * len(rows),
            "amount": [r[2] for r in rows],
        }
    )


def test_tier_rules_take_the_highest_threshold_reached_in_the_window() -> None:
    frame = _purchases(
        [
            ("a", "2026-06-01", 300.0),
            ("a", "2026-07-01", 300.0),  # 600 in the window: gold
            ("b", "2026-06-01", 150.0),  # silver
            ("c", "2026-06-01", 50.0),  # below every threshold: null (keeps the file's tier)
            ("d", "2024-01-01", 9000.0),  # outside the 365-day window
        ]
    )
    rules = TierRules.parse("gold=500, silver=100")
    tiers = dict(derive_tiers(frame, datetime(2026, 11, 1, tzinfo=UTC), rules).iter_rows())
    assert tiers.get("a") == "gold" and tiers.get("b") == "silver"
    assert tiers.get("c") is None and tiers.get("d") is None
    for bad in ("gold", "gold=x", "=5", "gold=-1", ""):
        with pytest.raises(AnalyticsError):
            TierRules.parse(bad)


def test_vector_top_categories_follow_the_customer_vector() -> None:
    items = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], dtype=np.float32)
    users = np.array([[2, 0], [0, 3], [0, 0]], dtype=np.float32)
    top = vector_top_categories(["u1", "u2", "u3"], users, items, ["x", "x", "y", "y"], n=2)
    rows = dict(top.iter_rows())
    assert rows["u1"] == ["x", "y"] and rows["u2"] == ["y", "x"]
    assert rows["u3"] == []  # no vector, no taste


def test_analytics_cli_writes_one_row_per_customer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = synth.write_world(
        synth.generate(synth.SynthConfig(customers=400, products=40)), tmp_path
    )
    out = tmp_path / "analytics.parquet"
    code = main(
        [
            "analytics",
            "--interactions", str(world["interactions"]),
            "--catalog", str(world["catalog"]),
            "--customers", str(world["customers"]),
            "--as-of", "2026-01-01",
            "--horizon-days", "60",
            "--out", str(out),
            "--tier-rules", "gold=100000",
            "--lifecycle-rules", "new_days=10,active_days=45",
        ]
    )  # fmt: skip
    assert code == 0
    table = pl.read_parquet(out)
    customers = pl.read_parquet(world["customers"])
    assert table.height == customers.height
    assert table["customer_id"].is_unique().all()
    assert set(table["lifecycle_stage"].unique()) <= {
        "prospect", "new", "active", "loyal", "at_risk", "lapsed"
    }  # fmt: skip
    assert {"expected_purchases", "clv", "p_alive", "churn_risk", "top_categories"} <= set(
        table.columns
    )
    assert "customers as of 2026-01-01" in capsys.readouterr().out
    assert main(["analytics", "--interactions", str(world["interactions"]), "--as-of",
                 "2026-01-01", "--out", str(tmp_path / "x.txt")]) == 2  # fmt: skip
    assert "use a .parquet or .csv" in capsys.readouterr().err


def test_lifecycle_rules_parse_from_the_command_line_form() -> None:
    rules = LifecycleRules.parse("new_days=14, active_days=60,loyal_min_frequency=4")
    assert (rules.new_days, rules.active_days, rules.loyal_min_frequency) == (14, 60, 4)
    assert rules.at_risk_days == LifecycleRules().at_risk_days
    for bad in ("new=14", "new_days=-1", "new_days", "active_days=200"):  # 200 > at_risk 180
        with pytest.raises(AnalyticsError):
            LifecycleRules.parse(bad)

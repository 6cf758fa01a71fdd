"""`recsvc report --by arm`: per-arm figures, intervals and tests (the statistics alone; the
end-to-end run over tracked events is in test_experiments.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from formats.attribution import Attribution, new_id, parse, with_arm
from formats.exported import COLUMNS
from training.experiment_report import arm_report, format_arms, two_proportion_p, wilson


def test_wilson_interval_matches_the_textbook() -> None:
    low, high = wilson(10, 100)
    assert low == pytest.approx(0.0552, abs=1e-4) and high == pytest.approx(0.1744, abs=1e-4)
    assert wilson(0, 50)[0] == pytest.approx(0.0) and wilson(0, 0) == (None, None)
    assert wilson(50, 50)[1] == pytest.approx(1.0)


def test_two_proportion_z_test() -> None:
    # 120/1000 vs 100/1000: z = 1.43, p = 0.153 (pooled).
    assert two_proportion_p(120, 1000, 100, 1000) == pytest.approx(0.153, abs=1e-3)
    assert two_proportion_p(5, 10, 5, 10) is not None
    assert two_proportion_p(0, 10, 0, 10) is None  # no variation at all
    assert two_proportion_p(1, 0, 1, 10) is None


def test_recommendation_ids_carry_experiment_and_arm_and_old_ids_still_parse() -> None:
    rid = new_id("rp", "bigger-v2", "treatment_1")
    assert parse(rid) == Attribution("rp", "bigger-v2", "treatment_1")
    assert len(rid) <= 128
    old = "rp-" + "a" * 32
    assert parse(old) == Attribution("rp") and with_arm(old, "", "") == old
    assert parse("not-ours") == Attribution("")
    with pytest.raises(ValueError):
        with_arm(old, "has.dot", "arm")


def _frame(rows: list[tuple[str, str, str, float | None]]) -> pl.DataFrame:
    """(customer, type, recommendation_id, amount) rows."""
    t0 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
    data = [
        {
            "event_id": f"e{i}",
            "customer_id": c,
            "event_type": kind,
            "product_id": "P1",
            "offer_id": None,
            "timestamp": t0 + i,
            "quantity": 1.0,
            "amount": amount,
            "recommendation_id": rid,
            "stream_id": f"{i}-0",
        }
        for i, (c, kind, rid, amount) in enumerate(rows)
    ]
    frame = pl.DataFrame(data, schema={**COLUMNS, "timestamp": pl.Int64})
    return frame.with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))


def test_per_arm_figures_tests_and_warnings() -> None:
    rows: list[tuple[str, str, str, float | None]] = []
    for arm, clicks in (("control", 10), ("new", 30)):
        rid = new_id("rp", "exp", arm)
        rows += [(f"{arm}{i % 40}", "rec_impression", rid, None) for i in range(200)]
        rows += [(f"{arm}0", "rec_click", rid, None)] * clicks
        rows += [(f"{arm}0", "purchase", rid, 5.0)] * (clicks // 10)
    rows.append(("x", "rec_impression", "rp-" + "b" * 32, None))  # no experiment: not here
    arms = {r["arm"]: r for r in arm_report(_frame(rows), min_impressions=150).to_dicts()}
    assert set(arms) == {"control", "new"}
    new, control = arms["new"], arms["control"]
    assert (new["impressions"], new["clicks"], new["purchases"]) == (200, 30, 3)
    assert new["customers"] == 40 and new["revenue"] == 15.0
    assert new["ctr"] == 0.15 and (new["ctr_low"], new["ctr_high"]) == pytest.approx(
        wilson(30, 200)
    )
    assert new["conversion"] == 3 / 200 and new["revenue_per_impression"] == 15.0 / 200
    assert new["rpi_low"] < 0.075 < new["rpi_high"]
    assert new["ctr_p"] == pytest.approx(two_proportion_p(30, 200, 10, 200))
    assert new["ctr_p"] < 0.01 and new["rpi_p"] is not None
    assert control["control"] and control["ctr_p"] is None and control["warning"] == ""
    small = arm_report(_frame(rows), min_impressions=1000).to_dicts()
    assert all("below 1,000 impressions" in r["warning"] for r in small)
    other = arm_report(_frame(rows), control="baseline").to_dicts()
    assert all("no arm named 'baseline'" in r["warning"] for r in other)
    text = format_arms(arm_report(_frame(rows), min_impressions=1000))
    assert "experiment exp" in text and "control *" in text
    assert "warning: new: below 1,000 impressions" in text
    assert "15.00% [" in text

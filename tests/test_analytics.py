"""Customer analytics: RFM, segments and lifecycle on hand-made histories; the repeat-buying
model's holdout check on data simulated from a known BG/NBD process."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest

from training import analytics
from training.analytics import (
    OUTPUT_COLUMNS,
    AnalyticsConfig,
    AnalyticsError,
    Candidate,
    CandidateResult,
    LifecycleRules,
    Metrics,
    SegmentRules,
    analyze,
    compute,
    holdout_check,
    holdout_split,
    purchase_days,
    top_categories,
)
from training.analytics.btyd import predict
from training.analytics.forecasters import fit_forecaster, weekly_summary
from training.analytics.selection import rank_candidates
from training.analytics.summaries import buyer_summary

AS_OF = date(2025, 6, 30)
# No repeat-buying model for the hand-made histories: the rules are what is under test.
NO_MODEL = AnalyticsConfig(min_repeat_customers=1_000)
FAST = (Candidate("bgnbd"), Candidate("mbgnbd"))  # Pareto/NBD fits take seconds


def _events(rows: list[tuple[str, str, str, str, float, float | None]]) -> pl.DataFrame:
    """(customer, product, "YYYY-MM-DD HH:MM", event_type, quantity, amount) rows."""
    return pl.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "product_id": [r[1] for r in rows],
            "timestamp": [
                datetime.strptime(r[2], "%Y-%m-%d %H:%M").replace(tzinfo=UTC) for r in rows
            ],
            "event_type": [r[3] for r in rows],
            "quantity": [r[4] for r in rows],
            "amount": [r[5] for r in rows],
        },
        schema={
            "customer_id": pl.Utf8,
            "product_id": pl.Utf8,
            "timestamp": pl.Datetime("us", "UTC"),
            "event_type": pl.Utf8,
            "quantity": pl.Float64,
            "amount": pl.Float64,
        },
    )


# A: 4 purchase days (two orders on 06-28), last 2 days ago, first 171 days ago, 100 a day.
# B: 2 days, last 20 days ago, first 90 days ago. C: one purchase 15 days ago (new).
# D: 2 days, last 149 days ago (at risk). E: one purchase 272 days ago, amount unknown: 2 x 7.5
# from the catalog (lapsed). F: only views (prospect). A's purchase after as_of is ignored.
HISTORY = _events(
    [
        ("A", "P1", "2025-01-10 09:00", "purchase", 1, 100.0),
        ("A", "P1", "2025-03-10 09:00", "purchase", 1, 100.0),
        ("A", "P2", "2025-05-10 09:00", "purchase", 1, 100.0),
        ("A", "P2", "2025-06-28 09:00", "purchase", 1, 60.0),
        ("A", "P3", "2025-06-28 18:30", "purchase", 1, 40.0),
        ("A", "P3", "2025-07-05 10:00", "purchase", 1, 500.0),
        ("B", "P1", "2025-04-01 12:00", "purchase", 1, 50.0),
        ("B", "P2", "2025-06-10 12:00", "purchase", 1, 30.0),
        ("B", "P3", "2025-06-20 12:00", "add_to_cart", 1, None),
        ("C", "P3", "2025-06-15 08:00", "purchase", 1, 20.0),
        ("D", "P1", "2024-12-01 08:00", "purchase", 1, 10.0),
        ("D", "P1", "2025-02-01 08:00", "purchase", 1, 10.0),
        ("E", "P4", "2024-10-01 08:00", "purchase", 2, None),
        ("F", "P1", "2025-06-01 08:00", "view", 1, None),
    ]
)
CATALOG = pl.DataFrame(
    {
        "product_id": ["P1", "P2", "P3", "P4"],
        "category": ["coffee", "tea", "snacks", "books"],
        "price": [9.0, 5.0, 3.0, 7.5],
    }
)
CUSTOMERS = pl.DataFrame(
    {
        "customer_id": ["A", "G"],
        "tier": ["gold", "bronze"],
        "points": [1200.0, 0.0],
    }
)


def _rows(table: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {row["customer_id"]: row for row in table.iter_rows(named=True)}


def test_rfm_segments_and_lifecycle_on_a_hand_made_history() -> None:
    result = analyze(HISTORY, AS_OF, 90, CUSTOMERS, CATALOG, NO_MODEL)
    table = result.table
    assert table.columns == [*OUTPUT_COLUMNS, "tier", "points"]
    rows = _rows(table)
    assert sorted(rows) == ["A", "B", "C", "D", "E", "F", "G"]
    expected = {
        # recency, frequency (repeat days), monetary, scores, rfm, segment, stage
        "A": (2, 3, 100.0, 5, 5, 5, "555", "high_value", "loyal"),
        "B": (20, 1, 40.0, 3, 3, 4, "334", "mid_value", "active"),
        "C": (15, 0, 20.0, 4, 1, 3, "413", "mid_value", "new"),
        "D": (149, 1, 10.0, 2, 3, 1, "231", "low_value", "at_risk"),
        "E": (272, 0, 15.0, 1, 1, 2, "112", "low_value", "lapsed"),
        "F": (None, 0, None, 0, 0, 0, "000", "prospect", "prospect"),
        "G": (None, 0, None, 0, 0, 0, "000", "prospect", "prospect"),
    }
    fields = (
        "recency_days",
        "frequency",
        "monetary",
        "r_score",
        "f_score",
        "m_score",
        "rfm_score",
        "segment",
        "lifecycle_stage",
    )
    for customer, values in expected.items():
        assert tuple(rows[customer][f] for f in fields) == values, customer
    # Only purchases up to as_of count: A's coffee x2, tea x2 (one on 06-28), snacks x1.
    assert rows["A"]["top_categories"] == ["coffee", "tea", "snacks"]
    assert rows["E"]["top_categories"] == ["books"]
    assert rows["F"]["top_categories"] == []
    assert (rows["A"]["tier"], rows["A"]["points"]) == ("gold", 1200.0)
    assert (rows["G"]["tier"], rows["G"]["points"]) == ("bronze", 0.0)
    assert rows["B"]["tier"] is None
    # Too few repeat buyers for a model: the model columns are null, and the result says why.
    assert table["expected_purchases"].null_count() == table.height
    assert table["clv"].null_count() == table["p_alive"].null_count() == table.height
    assert table["churn_risk"].null_count() == table.height
    assert result.model is None
    assert any("no repeat-buying model" in n for n in result.notes)


def test_column_types() -> None:
    table = compute(HISTORY, AS_OF, 90, CUSTOMERS, CATALOG, NO_MODEL)
    schema = table.schema
    for c in ("recency_days", "frequency", "r_score", "f_score", "m_score"):
        assert schema[c] == pl.Int64, c
    for c in ("monetary", "expected_purchases", "clv", "p_alive", "churn_risk"):
        assert schema[c] == pl.Float64, c
    for c in ("customer_id", "rfm_score", "segment", "lifecycle_stage"):
        assert schema[c] == pl.Utf8, c
    assert schema["top_categories"] == pl.List(pl.Utf8)
    assert table["customer_id"].is_sorted()


def test_same_day_purchases_are_one_purchase_day() -> None:
    events = _events(
        [
            ("X", "P1", "2025-06-01 09:00", "purchase", 1, 10.0),
            ("X", "P2", "2025-06-01 12:00", "purchase", 1, 20.0),
            ("X", "P3", "2025-06-01 23:59", "purchase", 1, 30.0),
            ("X", "P1", "2025-06-20 10:00", "purchase", 1, 40.0),
        ]
    )
    days = purchase_days(events)
    assert days.rows() == [("X", date(2025, 6, 1), 60.0), ("X", date(2025, 6, 20), 40.0)]
    row = _rows(compute(events, AS_OF, 30, config=NO_MODEL))["X"]
    # Two purchase days: frequency counts the repeat day only; monetary is per day.
    assert (row["frequency"], row["recency_days"], row["monetary"]) == (1, 10, 50.0)


def test_unknown_spend() -> None:
    # Without the catalog, E's purchase (no amount) has no known value.
    rows = _rows(compute(HISTORY, AS_OF, 90, config=NO_MODEL))
    assert rows["E"]["monetary"] is None
    assert rows["E"]["m_score"] == 0
    assert rows["E"]["rfm_score"] == "110"
    # Judged on (r + f) * 3 / 2 = 3: low. The others' m scores are among 4 known values.
    assert rows["E"]["segment"] == "low_value"
    assert [rows[c]["m_score"] for c in "ABCD"] == [4, 3, 2, 1]
    assert rows["A"]["top_categories"] == []  # no catalog, no categories


def test_segment_and_lifecycle_rules_are_configurable() -> None:
    config = AnalyticsConfig(
        min_repeat_customers=1_000,
        segments=SegmentRules(high_rfm_total=10, mid_rfm_total=6),
        lifecycle=LifecycleRules(
            new_days=10, active_days=15, at_risk_days=150, loyal_min_frequency=1
        ),
    )
    rows = _rows(compute(HISTORY, AS_OF, 90, catalog=CATALOG, config=config))
    segments = {c: rows[c]["segment"] for c in "ABCDE"}
    assert segments == {
        "A": "high_value",  # 15
        "B": "high_value",  # 10
        "C": "mid_value",  # 8
        "D": "mid_value",  # 6
        "E": "low_value",  # 4
    }
    stages = {c: rows[c]["lifecycle_stage"] for c in "ABCDE"}
    # C: first purchase 15 days ago is no longer "new" (10) but active (<= 15).
    # B: last purchase 20 days ago, beyond active_days 15: at risk. D: 149 <= 150.
    assert stages == {"A": "loyal", "B": "at_risk", "C": "active", "D": "at_risk", "E": "lapsed"}
    tenure = AnalyticsConfig(
        min_repeat_customers=1_000, lifecycle=LifecycleRules(loyal_min_tenure_days=200)
    )
    assert _rows(compute(HISTORY, AS_OF, 90, config=tenure))["A"]["lifecycle_stage"] == "active"


def test_scores_with_ties_and_other_bins() -> None:
    # Ten buyers: frequency 0 for six of them, then 1, 1, 2, 5.
    rows: list[tuple[str, str, str, str, float, float | None]] = []
    for i, repeats in enumerate([0, 0, 0, 0, 0, 0, 1, 1, 2, 5]):
        for k in range(repeats + 1):
            day = date(2025, 6, 1) + timedelta(days=k)
            rows.append((f"K{i}", "P1", f"{day} 10:00", "purchase", 1, 10.0 + i))
    table = _rows(compute(_events(rows), AS_OF, 30, config=NO_MODEL))
    f = [table[f"K{i}"]["f_score"] for i in range(10)]
    # 1 + floor(5 * share strictly below): equal values share a score.
    assert f == [1, 1, 1, 1, 1, 1, 4, 4, 5, 5]
    config = AnalyticsConfig(rfm_bins=2, min_repeat_customers=1_000)
    table = _rows(compute(_events(rows), AS_OF, 30, config=config))
    assert [table[f"K{i}"]["m_score"] for i in range(10)] == [1] * 5 + [2] * 5


def test_config_is_validated() -> None:
    with pytest.raises(AnalyticsError, match="rfm_bins"):
        compute(HISTORY, AS_OF, 90, config=AnalyticsConfig(rfm_bins=10))
    with pytest.raises(AnalyticsError, match="at_risk_days"):
        AnalyticsConfig(lifecycle=LifecycleRules(active_days=100, at_risk_days=50)).validate()
    with pytest.raises(AnalyticsError, match="rfm_total"):
        AnalyticsConfig(segments=SegmentRules(high_rfm_total=16)).validate()
    with pytest.raises(AnalyticsError, match="horizon_days"):
        compute(HISTORY, AS_OF, 0)
    with pytest.raises(AnalyticsError, match="after calibration_end"):
        holdout_check(HISTORY, AS_OF, AS_OF)


def test_only_prospects() -> None:
    table = compute(HISTORY.filter(pl.col("customer_id") == "F"), AS_OF, 90, CUSTOMERS)
    assert table["lifecycle_stage"].to_list() == ["prospect"] * 3
    assert table["rfm_score"].to_list() == ["000"] * 3


def test_top_categories_match_the_feature_store() -> None:
    from training.features import customer_features
    from training.synth import SynthConfig, generate

    world = generate(SynthConfig(customers=400, products=120, seed=5))
    ours = top_categories(world.interactions, world.catalog)
    theirs = customer_features(world.interactions, world.catalog).select(
        "customer_id", "top_categories"
    )
    joined = theirs.join(ours, on="customer_id", how="left", suffix="_ours").with_columns(
        pl.col("top_categories_ours").fill_null([])
    )
    assert joined.height > 300
    mismatched = joined.filter(
        pl.col("top_categories").fill_null([]) != pl.col("top_categories_ours")
    )
    assert mismatched.height == 0


def test_choice_rule() -> None:
    def result(model: analytics.ModelName, error: float, corr: float) -> CandidateResult:
        metrics = Metrics(100, 100.0, 100.0 * (1 + error), error, corr, 1.0)
        return CandidateResult(Candidate(model), {}, metrics)

    bg, mbg, pareto = (
        result("bgnbd", 0.05, 0.60),
        result("mbgnbd", -0.06, 0.70),
        result("paretonbd", 0.01, 0.50),
    )
    failed = CandidateResult(Candidate("bgnbd", 0.01), {}, None, error="did not fit")
    # Smallest |error| wins ...
    assert [r.candidate.model for r in rank_candidates([bg, mbg, pareto, failed], 0.0)] == [
        "paretonbd",
        "bgnbd",
        "mbgnbd",
    ]
    # ... and within the tolerance the best correlation does.
    assert [r.candidate.model for r in rank_candidates([bg, mbg, pareto], 0.05)] == [
        "mbgnbd",
        "bgnbd",
        "paretonbd",
    ]


def simulate_bgnbd(
    n: int,
    r: float,
    alpha: float,
    a: float,
    b: float,
    days: int,
    acquisition_days: int,
    seed: int,
    start: date = date(2024, 1, 1),
) -> pl.DataFrame:
    """Purchases from a BG/NBD process (time in days): rate ~ Gamma(r, alpha), dropout
    probability after each repeat purchase ~ Beta(a, b), first purchases uniform over the
    first ``acquisition_days``, observed for ``days`` days; spend per customer ~ Gamma."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(r, 1 / alpha, n)
    dropout = rng.beta(a, b, n)
    t = rng.uniform(0, acquisition_days, n)
    owners, times = [np.arange(n)], [t.copy()]
    active = np.ones(n, dtype=bool)
    while active.any():
        t = t + rng.exponential(1 / rate)
        active &= t < days
        owners.append(np.flatnonzero(active))
        times.append(t[active])
        active &= rng.random(n) >= dropout  # dies after this purchase with probability p
    owner = np.concatenate(owners)
    when = np.concatenate(times)
    base_us = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp() * 1e6)
    mean_spend = rng.gamma(4.0, 5.0, n)
    return pl.DataFrame(
        {
            "customer_id": pl.Series([f"S{i:05d}" for i in owner]),
            "product_id": "P1",
            "timestamp": pl.Series(base_us + (when * 86_400e6).astype(np.int64)).cast(
                pl.Datetime("us", "UTC")
            ),
            "event_type": "purchase",
            "quantity": 1.0,
            "amount": np.round(mean_spend[owner] * rng.gamma(10.0, 0.1, len(owner)), 2),
        }
    )


@pytest.fixture(scope="module")
def simulated() -> pl.DataFrame:
    # r = 0.8, alpha = 40 (a purchase every 50 days on average), a = 0.8, b = 2.5 (24% drop
    # out after a repeat purchase); 90 days of acquisition, 360 of calibration, 180 of holdout.
    return simulate_bgnbd(5_000, 0.8, 40.0, 0.8, 2.5, days=541, acquisition_days=90, seed=0)


def test_holdout_check_on_a_known_bgnbd_process(simulated: pl.DataFrame) -> None:
    start = date(2024, 1, 1)
    calibration_end, holdout_end = start + timedelta(days=360), start + timedelta(days=540)
    report = holdout_check(
        simulated, calibration_end, holdout_end, AnalyticsConfig(candidates=FAST)
    )
    assert report.customers == 5_000
    assert report.model.selection_end == calibration_end - timedelta(days=180)
    assert report.actual > 3_000
    assert abs(report.relative_error) < 0.10
    assert report.correlation > 0.6
    assert all(c.selection is not None and c.holdout is not None for c in report.candidates)
    assert report.chosen in report.format()
    # The BG/NBD fit recovers the process: mean purchase rate r/alpha, mean dropout a/(a+b).
    bg = AnalyticsConfig(candidates=(Candidate("bgnbd"),))
    params = holdout_check(simulated, calibration_end, holdout_end, bg, False).model.params
    assert params["r"] / params["alpha"] == pytest.approx(0.02, rel=0.15)
    assert params["a"] / (params["a"] + params["b"]) == pytest.approx(0.8 / 3.3, rel=0.15)


def test_compute_with_a_model(simulated: pl.DataFrame) -> None:
    as_of = date(2024, 1, 1) + timedelta(days=540)
    result = analyze(simulated, as_of, 90, config=AnalyticsConfig(candidates=FAST))
    table, model = result.table, result.model
    assert model is not None and model.selection_end is not None
    assert model.spend_model == "gamma-gamma"
    assert table.height == 5_000
    assert table["expected_purchases"].null_count() == 0
    assert table["expected_purchases"].min() >= 0  # type: ignore[operator]
    alive = table["p_alive"]
    assert alive.min() >= 0 and alive.max() <= 1  # type: ignore[operator]
    assert (table["churn_risk"] + alive - 1).abs().max() < 1e-12  # type: ignore[operator]
    # Spend is positive for everyone here, so CLV is zero exactly when no purchase is expected.
    assert ((table["clv"] > 0) == (table["expected_purchases"] > 0)).all()
    # Segment by CLV: the top 20% of buyers by CLV are high value.
    config = AnalyticsConfig(candidates=FAST, segments=SegmentRules(by="clv"))
    by_clv = compute(simulated, as_of, 90, config=config)
    high = by_clv.filter(pl.col("segment") == "high_value")
    assert high.height == pytest.approx(1_000, abs=5)
    rest = by_clv.filter(pl.col("segment") != "high_value")
    assert high["clv"].min() >= rest["clv"].max()  # type: ignore[operator]
    # Discounting lowers CLV, never expected purchases.
    discounted = compute(
        simulated, as_of, 90, config=AnalyticsConfig(candidates=FAST, annual_discount_rate=0.2)
    )
    assert discounted["clv"].sum() < table["clv"].sum()
    assert discounted["expected_purchases"].sum() == pytest.approx(
        table["expected_purchases"].sum()
    )


def test_sampled_fit_predicts_for_everyone(simulated: pl.DataFrame) -> None:
    as_of = date(2024, 1, 1) + timedelta(days=540)
    config = AnalyticsConfig(candidates=(Candidate("bgnbd"),), max_fit_customers=1_000)
    result = analyze(simulated, as_of, 90, config=config)
    assert result.model is not None
    assert result.model.fit_customers == 1_000 and result.model.customers == 5_000
    assert result.table["expected_purchases"].null_count() == 0


def test_holdout_split(simulated: pl.DataFrame) -> None:
    calibration_end, holdout_end = holdout_split(simulated)
    first = simulated["timestamp"].min().date()  # type: ignore[union-attr]
    assert holdout_end == simulated["timestamp"].max().date()  # type: ignore[union-attr]
    assert (holdout_end - calibration_end).days == (holdout_end - first).days // 2


def test_pareto_heavy_buyer_on_the_last_day() -> None:
    """lifetimes' Pareto/NBD is NaN for heavy buyers whose last purchase is on the last day."""
    import pandas as pd
    from lifetimes import ParetoNBDFitter

    fitter = ParetoNBDFitter()
    fitter.params_ = pd.Series({"r": 0.9007, "alpha": 42.86, "s": 0.3159, "beta": 66.06})
    summary = pl.DataFrame({"x": [203, 203, 20, 20], "tx": [271, 270, 271, 270], "T": [271] * 4})
    pred = predict(fitter, summary, 90)
    assert np.isfinite(pred.expected).all()
    assert pred.p_alive[0] == 1.0 and pred.p_alive[2] == 1.0
    # Continuous in tx: a day earlier gives nearly the same answer.
    assert pred.expected[0] == pytest.approx(pred.expected[1], rel=0.01)
    assert pred.expected[2] == pytest.approx(pred.expected[3], rel=0.01)
    assert not math.isnan(pred.expected[0])


def test_bgnbd_expectation_where_the_closed_form_is_undefined() -> None:
    """With a + b < 1, lifetimes' BG/NBD expectation is NaN for some customers without a
    repeat purchase; the quadrature equals the closed form wherever that is defined and
    fills the rest, rising with the horizon and falling with the time since the last day."""
    import pandas as pd
    from lifetimes import BetaGeoFitter

    from training.analytics.bgnbd import expected_if_alive

    rng = np.random.default_rng(3)
    n = 3_000
    big_t = rng.uniform(1, 400, n)
    x = rng.integers(0, 30, n)
    tx = np.where(x > 0, big_t * rng.uniform(0, 1, n), 0.0)
    for params in (
        {"r": 0.8, "alpha": 5.0, "a": 2.5, "b": 4.0},
        {"r": 0.26, "alpha": 29.8, "a": 0.27, "b": 0.55},  # a penalized CDNOW fit
    ):
        fitter = BetaGeoFitter()
        fitter.params_ = pd.Series(params)
        with np.errstate(invalid="ignore"):  # lifetimes' own NaN
            closed = np.asarray(
                fitter.conditional_expected_number_of_purchases_up_to_time(365.0, x, tx, big_t),
                dtype=np.float64,
            )
        alive = np.asarray(fitter.conditional_probability_alive(x, tx, big_t), dtype=np.float64)
        quad = alive * expected_if_alive(params, x, big_t, 365.0)
        defined = np.isfinite(closed)
        np.testing.assert_allclose(quad[defined], closed[defined], rtol=1e-6)
        assert np.isfinite(quad).all()
    assert not defined.all()  # the penalized fit does hit the undefined case
    summary = pl.DataFrame({"x": x, "tx": tx, "T": big_t})
    pred = predict(fitter, summary, 365)
    assert np.isfinite(pred.expected).all()
    np.testing.assert_allclose(pred.expected, quad, rtol=1e-6)
    zero = np.zeros(2, dtype=np.int64)
    short, long_ = (
        expected_if_alive(params, zero, np.array([10.0, 300.0]), t) for t in (30.0, 365.0)
    )
    assert (long_ > short).all() and short[0] > short[1]
    # A degenerate fit (a shape at 0, seen on a tiny world): undefined, not an exception.
    degenerate = {"r": 0.3, "alpha": 10.0, "a": 1e-17, "b": 4.8e-9}
    assert np.isnan(expected_if_alive(degenerate, zero, np.ones(2), 30.0)).all()


def test_weekly_summary_counts_purchase_weeks_from_each_first_purchase() -> None:
    day = date(2024, 1, 1)
    days = pl.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "c"],
            "day": [day + timedelta(d) for d in (0, 2, 7, 19, 4, 40)],
            "spend": [1.0] * 6,
        }
    )
    end = day + timedelta(28)
    s = weekly_summary(days, end, pl.DataFrame({"customer_id": ["b", "a"]}))
    assert s["customer_id"].to_list() == ["b", "a"]  # the order asked for; c is after `end`
    # a: days 0, 2, 7, 19 fall in weeks 0, 0, 1, 2 of their own; b bought once.
    assert s["x"].to_list() == [0, 2]
    assert s["tx"].to_list() == [0.0, 2.0]
    assert s["T"].to_list() == pytest.approx([24 / 7, 4.0])


def test_weekly_candidates_and_the_ensemble(simulated: pl.DataFrame) -> None:
    end = date(2024, 1, 1) + timedelta(days=360)
    members = (Candidate("bgnbd"), Candidate("mbgnbd"), Candidate("bgnbd", 0.0, "week"))
    config = AnalyticsConfig(candidates=(*members, Candidate("ensemble")))
    days = purchase_days(simulated)
    summary = buyer_summary(days, end)
    fitted = [fit_forecaster(c, days, end, config) for c in members]
    preds = [f.predict(summary, end, 180).expected for f in fitted]
    weekly = fitted[2]
    assert weekly.days_per_week >= 1.0 and "days_per_week" in weekly.params
    # Purchase weeks converted back to purchase days: the same order of magnitude as days.
    assert preds[2].sum() == pytest.approx(preds[0].sum(), rel=0.3)
    ensemble = fit_forecaster(Candidate("ensemble"), days, end, config)
    assert ensemble.params == {"members": 2.0}
    pred = ensemble.predict(summary, end, 180)
    # BG/NBD's shares (so its correlation with anything), the other candidates' mean total.
    assert np.corrcoef(pred.expected, preds[0])[0, 1] == pytest.approx(1.0)
    assert pred.expected.sum() == pytest.approx((preds[1].sum() + preds[2].sum()) / 2)
    assert (pred.p_alive >= 0).all() and (pred.p_alive <= 1).all()
    # Chosen like any candidate on the choice split, and reported by the holdout check.
    report = holdout_check(simulated, end, end + timedelta(days=180), config)
    labels = [c.candidate.label for c in report.candidates]
    assert "Ensemble (BG/NBD shares, mean total)" in labels and "BG/NBD, weekly" in labels
    assert all(c.selection is not None for c in report.candidates)
    with pytest.raises(AnalyticsError, match="grain"):
        AnalyticsConfig(candidates=(Candidate("bgnbd", 0.0, "month"),)).validate()  # type: ignore[arg-type]

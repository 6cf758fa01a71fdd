"""`recsvc report --by arm`: per experiment arm, what its recommendations earned, with 95%
intervals and a test of each arm against the control arm.

Events are attributed through the recommendation_id they carry (formats/attribution.py: the
id names experiment and arm), so no lookup is needed. Per arm: customers shown something,
impressions (rec_impression), clicks (rec_click), purchases attributed (purchase events with
the id) and their revenue; CTR = clicks / impressions and conversion = purchases /
impressions with Wilson score intervals and a two-proportion z-test against control;
revenue per impression with a normal interval and a Welch z-test. Impressions are treated
as independent trials (customers seeing many lists make the intervals somewhat too narrow).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import polars as pl
from scipy.stats import norm

from formats.attribution import PATTERN

Z95 = float(norm.ppf(0.975))
COLUMNS = (
    "experiment",
    "arm",
    "control",
    "customers",
    "impressions",
    "clicks",
    "ctr",
    "ctr_low",
    "ctr_high",
    "ctr_p",
    "purchases",
    "conversion",
    "conversion_low",
    "conversion_high",
    "conversion_p",
    "revenue",
    "revenue_per_impression",
    "rpi_low",
    "rpi_high",
    "rpi_p",
    "warning",
)


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float | None, float | None]:
    """The Wilson score interval of a proportion (None without trials)."""
    if trials <= 0:
        return None, None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_p(s1: int, n1: int, s2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test (None when undefined)."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None if s1 / n1 == s2 / n2 else 0.0
    return float(2 * norm.sf(abs(s1 / n1 - s2 / n2) / se))


def mean_interval(total: float, squares: float, n: int) -> tuple[float | None, float, float]:
    """Mean per trial of amounts summing to ``total`` (``squares`` their squares; trials
    without an amount count as 0), its standard error, and the variance of one trial."""
    if n <= 0:
        return None, 0.0, 0.0
    mean = total / n
    variance = max(squares / n - mean * mean, 0.0) * (n / (n - 1) if n > 1 else 1.0)
    return mean, math.sqrt(variance / n), variance


def arm_report(
    events: pl.DataFrame,
    start: datetime | None = None,
    end: datetime | None = None,
    control: str = "control",
    min_impressions: int = 1000,
) -> pl.DataFrame:
    """One row per (experiment, arm) seen in ``events`` (exported events) over [start, end)."""
    if start is not None:
        events = events.filter(pl.col("timestamp") >= start)
    if end is not None:
        events = events.filter(pl.col("timestamp") < end)
    parts = pl.col("recommendation_id").str.extract_groups(PATTERN)
    tagged = (
        events.filter(pl.col("recommendation_id").is_not_null())
        .with_columns(
            parts.struct.field("3").alias("experiment"), parts.struct.field("4").alias("arm")
        )
        .filter(pl.col("experiment").is_not_null())
    )
    kind = pl.col("event_type")
    amount = pl.when(kind == "purchase").then(pl.col("amount").fill_null(0.0)).otherwise(0.0)
    arms = (
        tagged.group_by("experiment", "arm")
        .agg(
            pl.col("customer_id").filter(kind == "rec_impression").n_unique().alias("customers"),
            (kind == "rec_impression").sum().alias("impressions"),
            (kind == "rec_click").sum().alias("clicks"),
            (kind == "purchase").sum().alias("purchases"),
            amount.sum().alias("revenue"),
            (amount * amount).sum().alias("squares"),
        )
        .sort("experiment", "arm")
    )
    rows = arms.to_dicts()
    controls = {r["experiment"]: r for r in rows if r["arm"] == control}
    out = [_row(r, controls.get(r["experiment"]), control, min_impressions) for r in rows]
    schema: dict[str, Any] = {name: pl.Float64 for name in COLUMNS}
    schema.update(
        experiment=pl.Utf8,
        arm=pl.Utf8,
        control=pl.Boolean,
        customers=pl.Int64,
        impressions=pl.Int64,
        clicks=pl.Int64,
        purchases=pl.Int64,
        warning=pl.Utf8,
    )
    return pl.DataFrame(out, schema=schema)


def _row(
    r: dict[str, Any], ctl: dict[str, Any] | None, control: str, min_impressions: int
) -> dict[str, object]:
    n, clicks, purchases = int(r["impressions"]), int(r["clicks"]), int(r["purchases"])
    revenue, squares = float(r["revenue"]), float(r["squares"])
    is_control = r["arm"] == control
    ctr_low, ctr_high = wilson(clicks, n)
    conv_low, conv_high = wilson(purchases, n)
    rpi, se, _ = mean_interval(revenue, squares, n)
    row: dict[str, object] = {
        "experiment": r["experiment"],
        "arm": r["arm"],
        "control": is_control,
        "customers": r["customers"],
        "impressions": n,
        "clicks": clicks,
        "ctr": clicks / n if n else None,
        "ctr_low": ctr_low,
        "ctr_high": ctr_high,
        "ctr_p": None,
        "purchases": purchases,
        "conversion": purchases / n if n else None,
        "conversion_low": conv_low,
        "conversion_high": conv_high,
        "conversion_p": None,
        "revenue": revenue,
        "revenue_per_impression": rpi,
        "rpi_low": None if rpi is None else rpi - Z95 * se,
        "rpi_high": None if rpi is None else rpi + Z95 * se,
        "rpi_p": None,
    }
    warnings = []
    if n < min_impressions:
        warnings.append(f"below {min_impressions:,} impressions: too few to conclude")
    if ctl is None:
        warnings.append(f"no arm named {control!r} to test against (--control)")
    elif not is_control:
        cn = int(ctl["impressions"])
        row["ctr_p"] = two_proportion_p(clicks, n, int(ctl["clicks"]), cn)
        row["conversion_p"] = two_proportion_p(purchases, n, int(ctl["purchases"]), cn)
        c_rpi, c_se, _ = mean_interval(float(ctl["revenue"]), float(ctl["squares"]), cn)
        if rpi is not None and c_rpi is not None and (se or c_se):
            z = (rpi - c_rpi) / math.sqrt(se * se + c_se * c_se)
            row["rpi_p"] = float(2 * norm.sf(abs(z)))
    row["warning"] = "; ".join(warnings)
    return row


def format_arms(frame: pl.DataFrame) -> str:
    """Per experiment, a table of its arms: counts, rates with [95% interval], p vs control."""
    if frame.is_empty():
        return "per experiment arm\n  (no events with an experiment's recommendation_id)"

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.2%}"

    def money(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    def p(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = ["per experiment arm (95% intervals; p: two-sided test against the control arm)"]
    header = (
        f"  {'arm':<16} {'customers':>9} {'impr.':>8} {'clicks':>7} "
        f"{'CTR [95% CI]':>28} {'p':>6} {'purch.':>7} {'conversion [95% CI]':>28} {'p':>6} "
        f"{'revenue':>11} {'rev/impr. [95% CI]':>27} {'p':>6}"
    )
    for experiment in frame["experiment"].unique(maintain_order=True).to_list():
        lines.append(f"experiment {experiment}")
        lines.append(header)
        notes = []
        for r in frame.filter(pl.col("experiment") == experiment).iter_rows(named=True):
            name = r["arm"] + (" *" if r["control"] else "")
            ctr = f"{pct(r['ctr'])} [{pct(r['ctr_low'])}, {pct(r['ctr_high'])}]"
            conv = (
                f"{pct(r['conversion'])} [{pct(r['conversion_low'])}, {pct(r['conversion_high'])}]"
            )
            rpi = (
                f"{money(r['revenue_per_impression'])} [{money(r['rpi_low'])}, "
                f"{money(r['rpi_high'])}]"
            )
            lines.append(
                f"  {name:<16} {r['customers']:>9,} {r['impressions']:>8,} {r['clicks']:>7,} "
                f"{ctr:>28} {p(r['ctr_p']):>6} {r['purchases']:>7,} {conv:>28} "
                f"{p(r['conversion_p']):>6} {r['revenue']:>11,.2f} {rpi:>27} {p(r['rpi_p']):>6}"
            )
            if r["warning"]:
                notes.append(f"  warning: {r['arm']}: {r['warning']}")
        lines.extend(notes)
    lines.append("  (* the control arm)")
    return "\n".join(lines)

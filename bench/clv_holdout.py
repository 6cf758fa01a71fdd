"""The repeat-buying model's holdout check (issues 6 and 17) on CDNOW and on a synthetic world.

CDNOW master (bundled with lifetimes): 23,570 customers' CD purchases, 1997-01 to 1998-06,
checked at three calibration cut-offs (1997-06-30, 1997-09-30, 1997-12-31; holdout to
1998-06-30). At each, the model is chosen and fitted by `training.analytics.holdout_check`
exactly as `recsvc analytics` would at the cut-off, never seeing the holdout; the
per-candidate holdout figures are printed for transparency only. The bar from issue 17: at
each cut-off, total holdout repeat purchases within 5% and per-customer correlation at least
that of lifetimes' plain BG/NBD on the same cut.

    python -m bench.clv_holdout [--cuts 1997-06-30,1997-09-30,1997-12-31] [--no-world]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from bench.harness import machine, today
from training.analytics import (
    Candidate,
    HoldoutReport,
    holdout_check,
    holdout_split,
)
from training.synth import SynthConfig, generate

CUTS = (date(1997, 6, 30), date(1997, 9, 30), date(1997, 12, 31))
HOLDOUT_END = date(1998, 6, 30)
BAR_ERROR = 0.05
LIFETIMES_BGNBD = Candidate("bgnbd")  # lifetimes' BetaGeoFitter, no penalty: the reference
SUPERVISED = Candidate("supervised")  # the time-shifted boosted model, shown beside it


def cdnow_path() -> Path:
    spec = importlib.util.find_spec("lifetimes")  # its location, without importing it
    if spec is None or spec.origin is None:
        raise SystemExit("lifetimes is not installed")
    return Path(spec.origin).parent / "datasets" / "CDNOW_master.txt"


def read_cdnow(path: Path) -> pl.DataFrame:
    """Whitespace-separated with a header: customer id (zero-padded), date YYYYMMDD, number
    of CDs, dollar value; one row per order (a customer may have several a day)."""
    rows = [line.split() for line in path.read_text().splitlines()[1:] if line.strip()]
    bad = [r for r in rows if len(r) != 4]
    if bad:
        raise SystemExit(f"{path}: unexpected row {bad[0]}")
    return pl.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "product_id": "CD",
            "timestamp": [datetime.strptime(r[1], "%Y%m%d").replace(tzinfo=UTC) for r in rows],
            "event_type": "purchase",
            "quantity": [float(r[2]) for r in rows],
            "amount": [float(r[3]) for r in rows],
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )


def reference(report: HoldoutReport, candidate: Candidate = LIFETIMES_BGNBD) -> tuple[float, float]:
    """Holdout (total error, correlation) of ``candidate`` (lifetimes' plain BG/NBD) in the
    report."""
    for c in report.candidates:
        if c.candidate == candidate and c.holdout is not None:
            return c.holdout.relative_error, c.holdout.correlation
    return float("nan"), float("nan")


def verdict(report: HoldoutReport) -> str:
    _, bg_corr = reference(report)
    met_total = abs(report.relative_error) <= BAR_ERROR
    met_corr = report.correlation >= bg_corr - 1e-9
    return (
        f"bar (|total error| <= {BAR_ERROR:.0%}, correlation >= BG/NBD's {bg_corr:.4f}): total "
        f"{'met' if met_total else 'NOT met'}, correlation {'met' if met_corr else 'NOT met'}"
    )


def run_case(
    name: str, interactions: pl.DataFrame, calibration_end: date, end: date
) -> HoldoutReport:
    print(f"\n=== {name} ===")
    start = time.perf_counter()
    report = holdout_check(interactions, calibration_end, end)
    print(report.format())
    print(verdict(report))
    print(
        f"(holdout check with every candidate also scored on the holdout: {report.seconds:.1f} s)"
    )
    print(f"({time.perf_counter() - start:.1f} s for this case)")
    return report


def summary(reports: list[tuple[str, HoldoutReport]]) -> str:
    lines = [
        "| calibration to | holdout days | actual | lifetimes BG/NBD: error | correlation | "
        "supervised: error | correlation | chosen (on the choice split) | error | correlation "
        "| bar |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in reports:
        bg_err, bg_corr = reference(r)
        sup_err, sup_corr = reference(r, SUPERVISED)
        ok = abs(r.relative_error) <= BAR_ERROR and r.correlation >= bg_corr - 1e-9
        lines.append(
            f"| {name} | {(r.holdout_end - r.calibration_end).days} | {r.actual:,.0f} | "
            f"{bg_err * 100:+.1f}% | {bg_corr:.4f} | {sup_err * 100:+.1f}% | {sup_corr:.4f} | "
            f"{r.chosen} | "
            f"{r.relative_error * 100:+.1f}% | {r.correlation:.4f} | "
            f"{'met' if ok else 'NOT met'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--cuts", default=",".join(c.isoformat() for c in CUTS), help="CDNOW calibration ends"
    )
    parser.add_argument("--no-world", action="store_true", help="skip the synthetic world")
    args = parser.parse_args()
    print(f"CLV holdout check, {today()}, {machine()}")
    cdnow = read_cdnow(cdnow_path())
    first, last = cdnow.select(
        pl.col("timestamp").min().dt.date().alias("a"),
        pl.col("timestamp").max().dt.date().alias("b"),
    ).row(0)
    customers = cdnow["customer_id"].n_unique()
    print(f"CDNOW master: {cdnow.height:,} orders, {customers:,} customers, {first} to {last}")
    reports = []
    for cut in (date.fromisoformat(c) for c in args.cuts.split(",")):
        name = f"CDNOW, calibration to {cut}, holdout to {HOLDOUT_END}"
        reports.append((str(cut), run_case(name, cdnow, cut, HOLDOUT_END)))
    if not args.no_world:
        world = generate(SynthConfig(customers=20_000, products=2_000, seed=7))  # make run's
        calibration_end, holdout_end = holdout_split(world.interactions)
        report = run_case(
            "synthetic world (make run: 20,000 customers, seed 7), last half of the year held out",
            world.interactions,
            calibration_end,
            holdout_end,
        )
        reports.append((f"world, {calibration_end}", report))
    print()
    print(summary(reports))


if __name__ == "__main__":
    main()

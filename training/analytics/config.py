"""The analytics' settings and rules: model candidates, lifecycle and segment rules, and the
error raised for bad arguments or unusable data."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final, Literal

from formats.errors import RecsvcError

ModelName = Literal["bgnbd", "mbgnbd", "paretonbd", "supervised", "ensemble"]
Grain = Literal["day", "week"]
_MODEL_LABELS: dict[str, str] = {
    "bgnbd": "BG/NBD",
    "mbgnbd": "MBG/NBD",
    "paretonbd": "Pareto/NBD",
    "supervised": "Supervised (time-shifted boosting)",
    "ensemble": "Ensemble (BG/NBD shares, mean total)",
}


class AnalyticsError(RecsvcError, ValueError):
    """Bad arguments, or data the analytics cannot work with; the message says which."""


@dataclass(frozen=True)
class Candidate:
    """One repeat-buying model to try; ``penalizer`` is lifetimes' L2 penalty on the
    parameters (time scaled to a maximum T of 10), per customer for every model; ``grain``
    "week" fits it on purchase weeks instead of purchase days (forecasters.py). The
    "supervised" model learns what customers with given recent behaviour bought next, on an
    earlier window of the same history (supervised.py; penalizer and grain do not apply). The
    "ensemble" averages the other candidates' totals (forecasters.py)."""

    model: ModelName
    penalizer: float = 0.0
    grain: Grain = "day"

    @property
    def label(self) -> str:
        name = _MODEL_LABELS[self.model]
        if self.grain == "week":
            name += ", weekly"
        return name if self.penalizer == 0 else f"{name} (penalizer {self.penalizer:g})"


DEFAULT_CANDIDATES: tuple[Candidate, ...] = (
    Candidate("bgnbd", 0.0),
    Candidate("bgnbd", 0.001),
    Candidate("bgnbd", 0.01),
    Candidate("mbgnbd", 0.0),
    Candidate("mbgnbd", 0.001),
    Candidate("mbgnbd", 0.01),
    Candidate("paretonbd", 0.0),
    Candidate("paretonbd", 0.001),
    Candidate("paretonbd", 0.01),
    Candidate("bgnbd", 0.0, "week"),
    Candidate("bgnbd", 0.001, "week"),
    Candidate("mbgnbd", 0.0, "week"),
    Candidate("mbgnbd", 0.001, "week"),
    Candidate("paretonbd", 0.0, "week"),
    Candidate("paretonbd", 0.001, "week"),
    Candidate("supervised"),
    Candidate("ensemble"),
)


@dataclass(frozen=True)
class LifecycleRules:
    """Stage rules, first match wins; "within N days" means ``<= N`` days before ``as_of``.

    prospect: no purchase. new: first purchase within ``new_days``. active: last purchase
    within ``active_days``; loyal instead when also ``frequency >= loyal_min_frequency`` (repeat
    purchase days) and tenure (days since the first purchase) ``>= loyal_min_tenure_days``.
    at_risk: last purchase within ``at_risk_days``. lapsed: longer ago.
    """

    new_days: int = 30
    active_days: int = 90
    at_risk_days: int = 180
    loyal_min_frequency: int = 3
    loyal_min_tenure_days: int = 0

    @classmethod
    def parse(cls, text: str) -> LifecycleRules:
        """ "new_days=14,active_days=60,loyal_min_frequency=4" (unnamed fields keep defaults)."""
        values: dict[str, int] = {}
        names = {f.name for f in fields(cls)}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, sep, raw = part.partition("=")
            if not sep or name.strip() not in names or not raw.strip().isdigit():
                raise AnalyticsError(
                    f"bad lifecycle rule {part!r}: expected NAME=DAYS_OR_COUNT with NAME one of "
                    + ", ".join(sorted(names))
                )
            values[name.strip()] = int(raw)
        rules = cls(**values)
        rules.validate()
        return rules

    def validate(self) -> None:
        if min(self.new_days, self.active_days, self.loyal_min_frequency) < 0:
            raise AnalyticsError("lifecycle thresholds must be >= 0")
        if self.loyal_min_tenure_days < 0:
            raise AnalyticsError("loyal_min_tenure_days must be >= 0")
        if self.at_risk_days < self.active_days:
            raise AnalyticsError("at_risk_days must be >= active_days")


@dataclass(frozen=True)
class SegmentRules:
    """Value segment of buyers.

    ``by="rfm"``: the total r + f + m (3..3*bins): ``high_value`` from ``high_rfm_total``,
    ``mid_value`` from ``mid_rfm_total``, else ``low_value``; unset, they are 12/15 and 8/15
    of the maximum, rounded up (12 and 8 with 5 bins). A buyer with unknown spend is
    judged on (r + f) * 3 / 2, rounded half up. ``by="clv"``: the top ``clv_high_share`` of
    buyers by CLV are high, the next ``clv_mid_share`` mid, the rest low (a buyer without a
    CLV is low); when no model could be fitted, RFM is used instead (noted in the result).
    """

    by: Literal["rfm", "clv"] = "rfm"
    high_rfm_total: int | None = None
    mid_rfm_total: int | None = None
    clv_high_share: float = 0.2
    clv_mid_share: float = 0.3

    def rfm_totals(self, bins: int) -> tuple[int, int]:
        """(high, mid) thresholds on r + f + m for ``bins`` score bins."""
        high = self.high_rfm_total if self.high_rfm_total is not None else (12 * bins + 4) // 5
        mid = self.mid_rfm_total if self.mid_rfm_total is not None else (8 * bins + 4) // 5
        return high, mid

    def validate(self, bins: int) -> None:
        if self.by not in ("rfm", "clv"):
            raise AnalyticsError(f"segment rules: unknown by={self.by!r} (expected rfm or clv)")
        high, mid = self.rfm_totals(bins)
        if not 3 <= mid <= high <= 3 * bins:
            raise AnalyticsError(
                f"segment rules: need 3 <= mid_rfm_total <= high_rfm_total <= {3 * bins}"
            )
        shares = (self.clv_high_share, self.clv_mid_share)
        if min(shares) < 0 or sum(shares) > 1:
            raise AnalyticsError("segment rules: CLV shares must be >= 0 and sum to <= 1")


@dataclass(frozen=True)
class AnalyticsConfig:
    rfm_bins: int = 5  # 2..9 (rfm_score is one digit per score)
    lifecycle: LifecycleRules = LifecycleRules()
    segments: SegmentRules = SegmentRules()
    candidates: tuple[Candidate, ...] = DEFAULT_CANDIDATES
    # Length of the model-choice holdout; None = the horizon, at most half of the history.
    selection_holdout_days: int | None = None
    tie_tolerance: float = 0.02  # |relative error| this close to the best counts as a tie
    # Scale predictions by actual / predicted of the chosen model on the choice split. Off by
    # default: on CDNOW and on the synthetic world that ratio, seen at a shorter horizon and an
    # earlier season, did not carry over to the later holdout (BENCHMARKS.md).
    bias_correction: bool = False
    max_bias_correction: float = 1.5  # the scale is clipped to [1/x, x]
    min_bias_purchases: int = 200  # fewer holdout purchases on the choice split: no correction
    min_repeat_customers: int = 10  # fewer repeat buyers: no model (BTYD columns null)
    max_fit_customers: int = 100_000  # fit on a random sample above this; predict for all
    seed: int = 0
    annual_discount_rate: float = 0.0  # CLV discounting, applied in 30-day steps
    gg_max_abs_correlation: float = 0.3  # |corr(frequency, spend)| above: no Gamma-Gamma
    min_gg_customers: int = 20

    def validate(self) -> None:
        if not 2 <= self.rfm_bins <= 9:
            raise AnalyticsError("rfm_bins must be between 2 and 9")
        self.lifecycle.validate()
        self.segments.validate(self.rfm_bins)
        if not self.candidates:
            raise AnalyticsError("at least one model candidate is needed")
        for c in self.candidates:
            if c.model not in _MODEL_LABELS:
                raise AnalyticsError(f"unknown model {c.model!r} (expected one of {_MODEL_LABELS})")
            if c.penalizer < 0:
                raise AnalyticsError("penalizers must be >= 0")
            if c.grain not in ("day", "week"):
                raise AnalyticsError(f"unknown grain {c.grain!r} (expected day or week)")
        if self.selection_holdout_days is not None and self.selection_holdout_days < 1:
            raise AnalyticsError("selection_holdout_days must be >= 1")
        if self.max_bias_correction < 1:
            raise AnalyticsError("max_bias_correction must be >= 1")
        if self.max_fit_customers < 100:
            raise AnalyticsError("max_fit_customers must be >= 100")
        if self.annual_discount_rate < 0:
            raise AnalyticsError("annual_discount_rate must be >= 0")


# The default of every entry point; one shared instance is safe since configs are frozen.
DEFAULT_CONFIG: Final = AnalyticsConfig()

"""Time: weekly, daily and yearly seasonality, and timestamps sampled from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from training.synth.arrays import F64, I64, normalized_cdf
from training.synth.config import SynthConfig, start_date, start_epoch_us

_US_PER_DAY: Final = 86_400_000_000
# Relative traffic per weekday (Monday first) and per hour of day (UTC hours when `start` is
# midnight UTC, the default; the day grid is anchored at `start`).
_WEEKDAY: Final = np.array([0.90, 0.88, 0.92, 0.97, 1.08, 1.25, 1.12])
_HOURS: Final = np.array(
    [0.15, 0.08, 0.05, 0.04, 0.05, 0.12, 0.35, 0.6, 0.8, 0.9, 1.0, 1.15,
     1.35, 1.2, 1.0, 0.95, 1.0, 1.15, 1.4, 1.6, 1.65, 1.4, 0.9, 0.45]
)  # fmt: skip


@dataclass(frozen=True)
class Season:
    day_cdf: F64  # length days + 1, day_cdf[d] = share of traffic before day d
    hour_cdf: F64
    start_us: int
    end_us: int

    @staticmethod
    def build(config: SynthConfig) -> Season:
        days = np.datetime64(start_date(config), "D") + np.arange(config.days)
        weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
        doy = (days - days.astype("datetime64[Y]")).astype(np.int64).astype(np.float64)

        def bump(center: float, width: float) -> F64:
            return np.asarray(np.exp(-0.5 * ((doy - center) / width) ** 2), dtype=np.float64)

        yearly = (
            1.0
            + 0.9 * bump(352, 9)  # December gifting peak
            + 0.7 * bump(331, 2.5)  # Black Friday / Cyber Monday
            + 0.25 * bump(4, 6)  # January sales
            - 0.15 * bump(215, 30)  # summer lull
        )
        trend = 1.0 + 0.15 * np.arange(config.days) / 365.0  # a growing business
        intensity = yearly * _WEEKDAY[weekday] * trend
        start_us = start_epoch_us(config)
        return Season(
            day_cdf=np.concatenate(([0.0], normalized_cdf(intensity))),
            hour_cdf=normalized_cdf(_HOURS),
            start_us=start_us,
            end_us=start_us + config.days * _US_PER_DAY,
        )

    def sample(self, lo_day: I64, hi_day: I64, rng: np.random.Generator) -> I64:
        """Seasonal timestamps (us) with each one inside [lo_day, hi_day) of its row."""
        lo, hi = self.day_cdf[lo_day], self.day_cdf[hi_day]
        u = lo + rng.random(len(lo_day)) * (hi - lo)
        day = np.clip(np.searchsorted(self.day_cdf, u, side="right") - 1, lo_day, hi_day - 1)
        hour = np.searchsorted(self.hour_cdf, rng.random(len(lo_day)), side="right")
        within = rng.integers(0, 3_600_000_000, len(lo_day))
        return np.asarray(
            self.start_us + day * _US_PER_DAY + np.minimum(hour, 23) * 3_600_000_000 + within,
            dtype=np.int64,
        )

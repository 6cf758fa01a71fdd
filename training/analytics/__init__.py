"""Customer analytics: RFM, value segment, lifecycle stage, and the repeat-buying model
(expected purchases, P(alive), churn risk and lifetime value over a horizon).

Conventions (the table `compute` returns, one row per customer):

* Only ``purchase`` events count, and only those at or before ``as_of``. A **purchase day** is
  a UTC calendar day with at least one purchase: two orders on one day are one purchase day.
  This is the convention of the BTYD ("buy till you die") models and of ``lifetimes``.
* ``frequency`` is the number of **repeat** purchase days, i.e. purchase days - 1 (lifetimes'
  ``frequency``); a one-time buyer has 0. It is exactly what the model is fitted on. Customers
  without a purchase (prospects) also have 0; their ``recency_days`` is null.
* ``recency_days`` is ``as_of`` minus the last purchase day, in days (0 = bought on ``as_of``).
  Note that lifetimes' ``recency`` is something else (last minus first purchase day).
* ``monetary`` is the mean spend per purchase day, over all purchase days (first included). A
  row's spend is ``amount``; when that is missing, ``quantity x price`` from the catalog when
  one is given; otherwise unknown. A day's spend is the sum of its known values; days with no
  known value are left out of the mean; no known value at all gives null.
* Scores ``r_score``, ``f_score``, ``m_score`` are 1..bins (5 = best: most recent, most
  frequent, highest spend) among buyers: ``1 + floor(bins * share of buyers strictly worse)``,
  so equal values always get equal scores (with many one-time buyers, f_score skips values).
  Score 0 means "nothing to score": no purchase (all three) or unknown spend (``m_score``).
  ``rfm_score`` is the three digits, e.g. "545" (prospects "000"); bins are at most 9.
* ``segment``: ``high_value`` / ``mid_value`` / ``low_value`` for buyers, from the RFM total
  (default) or from CLV rank (`SegmentRules`); ``prospect`` for customers without a purchase.
* ``lifecycle_stage``: prospect, new, active, loyal, at_risk, lapsed (`LifecycleRules`).
* ``expected_purchases`` (repeat purchase days in the ``horizon_days`` after ``as_of``),
  ``p_alive``, ``churn_risk`` = 1 - p_alive and ``clv`` (expected spend over the horizon) come
  from the repeat-buying model chosen by holdout (see `analyze`); null for prospects, whom the
  models do not describe (they are conditional on a first purchase), and when no model could be
  fitted.
  Under BG/NBD a customer who never repeated has p_alive 1 by construction (that model has no
  dropout before a first repeat purchase): for them, read drift from ``lifecycle_stage``.

The model is chosen on a holdout carved from the history (`selection`); `holdout_check` runs
that very procedure at a past ``calibration_end`` and reports on the holdout after it, which the
choice never saw (`holdout`). Spend per purchase day for CLV is Gamma-Gamma or the observed mean
(`spend`).

Modules, one job each: `config` (settings, rules, AnalyticsError), `summaries` (purchase days,
per-buyer summary), `rfm` (scores, value segment), `lifecycle`, `categories`, `fitting`
(lifetimes plumbing), `btyd` (fit and predict a candidate), `pareto` (our Pareto/NBD fit and
closed form), `supervised` (the time-shifted gradient-boosting candidate), `forecasters` (every
candidate behind one predict), `spend`, `selection`, `holdout`, `tiers`, and `pipeline`
(`analyze`, `compute`).

This package needs neither Redis nor gRPC; lifetimes (and pandas) and scikit-learn are imported
on first use.
"""

from training.analytics.categories import TOP_CATEGORIES, top_categories, vector_top_categories
from training.analytics.config import (
    DEFAULT_CANDIDATES,
    AnalyticsConfig,
    AnalyticsError,
    Candidate,
    LifecycleRules,
    ModelName,
    SegmentRules,
)
from training.analytics.holdout import HoldoutReport, holdout_check, holdout_split
from training.analytics.pipeline import (
    CUSTOMER_COLUMNS,
    OUTPUT_COLUMNS,
    AnalyticsResult,
    analyze,
    compute,
)
from training.analytics.selection import CandidateResult, Metrics, ModelInfo
from training.analytics.summaries import purchase_days
from training.analytics.tiers import TierRules, derive_tiers, with_tier_rules

__all__ = [
    "CUSTOMER_COLUMNS",
    "DEFAULT_CANDIDATES",
    "OUTPUT_COLUMNS",
    "TOP_CATEGORIES",
    "AnalyticsConfig",
    "AnalyticsError",
    "AnalyticsResult",
    "Candidate",
    "CandidateResult",
    "HoldoutReport",
    "LifecycleRules",
    "Metrics",
    "ModelInfo",
    "ModelName",
    "SegmentRules",
    "TierRules",
    "analyze",
    "compute",
    "derive_tiers",
    "holdout_check",
    "holdout_split",
    "purchase_days",
    "top_categories",
    "vector_top_categories",
    "with_tier_rules",
]

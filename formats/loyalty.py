"""The loyalty vocabulary: the names analytics writes into profiles and offer rules target."""

from __future__ import annotations

from typing import Final

PROSPECT: Final = "prospect"  # no purchase yet (also unknown and non-consenting customers)
# Buyers by value; prospects are their own segment.
VALUE_SEGMENTS: Final = ("high_value", "mid_value", "low_value")
SEGMENTS: Final = (*VALUE_SEGMENTS, PROSPECT)
LIFECYCLE_STAGES: Final = (PROSPECT, "new", "active", "loyal", "at_risk", "lapsed")
WELCOME_STAGES: Final = frozenset({PROSPECT, "new"})
WIN_BACK_STAGES: Final = frozenset({"at_risk", "lapsed"})
# Where an offer or recommendation is shown (the proto's Surface enum, by name).
SURFACES: Final = ("home", "product_page", "cart", "checkout")

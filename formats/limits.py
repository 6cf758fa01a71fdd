"""Bounds on the numbers recsvc accepts from files and requests.

Beyond them a value is a client bug, not a fact about a shop: 1e308 as a quantity turns the
ALS solve into NaN, 2^63-1 as stock overflows Redis integers, and sums of them lose all
precision. Training files and RPCs apply the same bounds.
"""

from __future__ import annotations

from typing import Final

MAX_QUANTITY: Final = 1_000_000.0  # units of one product in one event
MAX_AMOUNT: Final = 1_000_000_000.0  # currency of one event (an order line)
MAX_PRICE: Final = 1_000_000_000.0  # currency
MAX_STOCK: Final = 1_000_000_000  # units on hand
MAX_POINTS: Final = 1_000_000_000_000.0  # a loyalty balance or change
MAX_SESSION_PRODUCTS: Final = 100  # context.session_product_ids of one request
# Interaction timestamps: not before the Unix epoch, not after the clock plus this skew
# (the event API's tolerance; training files are read after the events happened).
MAX_FUTURE_MS: Final = 5 * 60 * 1000
MIN_TRAINING_TS_MS: Final = 0
MAX_TEXT_LENGTH: Final = 1000  # a product title or attribute value set through the API
MAX_PRODUCT_ATTRIBUTES: Final = 64  # attributes of one product set through the API

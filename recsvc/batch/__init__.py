"""Offline answers from a bundle, for campaigns: recommendations for many customers at once
(``recommend``: the same answers as RecommendProducts, searched in batches) and the reverse,
the customers most likely to want a product (``audience``). Serving code, not training: it
reuses recsvc.engine and never imports training."""

from recsvc.batch.audience import audience
from recsvc.batch.customers import CustomersFileError, read_customer_ids
from recsvc.batch.recommend import OUTPUT_SCHEMA, BatchResult, recommend_batch, recommend_chunk

__all__ = [
    "OUTPUT_SCHEMA",
    "BatchResult",
    "CustomersFileError",
    "audience",
    "read_customer_ids",
    "recommend_batch",
    "recommend_chunk",
]

"""Training on Spark: `recsvc train --engine spark`.

Only the ALS fit moves to Spark (training.engines); reading, validation, weighting, the split,
evaluation, the index and the bundle are the pipeline's own code on the driver.
"""

from training.spark.als import DEFAULTS, SPACE, WEIGHTS, SparkALSModel, spark_engine
from training.spark.session import SparkError, SparkSettings, parse_conf, spark_session

__all__ = [
    "DEFAULTS",
    "SPACE",
    "WEIGHTS",
    "SparkALSModel",
    "SparkError",
    "SparkSettings",
    "parse_conf",
    "spark_engine",
    "spark_session",
]

"""The serving core (no gRPC): ``Engine`` answers requests from one bundle; ``Catalog`` holds
the per-product arrays; ``Retrieval`` finds, filters and tops up candidates."""

from recsvc.engine.catalog import Catalog
from recsvc.engine.config import EngineConfig
from recsvc.engine.core import Engine, Plan, new_recommendation_id

__all__ = ["Catalog", "Engine", "EngineConfig", "Plan", "new_recommendation_id"]

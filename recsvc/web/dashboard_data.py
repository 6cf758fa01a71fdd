"""What the dashboard shows, as plain JSON-ready dicts: model versions, traffic, customers by
segment and stage, offer funnels and budgets, experiment arms. Each source is cheap: the model
directory's manifests, the server's metrics, one meta key written at `recsvc features load`,
one hash of offer counts; nothing scans Redis.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from feature_store import offer_usage
from formats import bundle
from recsvc.model_store import ModelStore
from recsvc.offer_service import OfferService
from recsvc.realtime import Realtime
from recsvc.web import traffic

EXPERIMENTS_PENDING = (
    "No experiment is running: per-arm results appear here once an experiments file "
    "(RECSVC_EXPERIMENTS) routes calls to arms and their events are tracked."
)


def _unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


class DashboardData:
    def __init__(
        self,
        store: ModelStore,
        realtime: Realtime,
        offers: OfferService,
        sampler: traffic.Sampler,
    ) -> None:
        self.store = store
        self.realtime = realtime
        self.offer_service = offers
        self.sampler = sampler

    def models(self) -> dict[str, Any]:
        """Every bundle of the model directory, newest first, with its held-out metrics and
        index recall; which one is published (CURRENT) and which this worker serves."""
        model_dir = self.store.model_dir
        published = bundle.history(model_dir)
        current = bundle.current_version(model_dir)
        engine = self.store.engine
        rows = []
        for m in bundle.list_versions(model_dir):
            version = str(m.get("version", ""))
            kind = str(m.get("model", "als"))
            models = m.get("evaluation", {}).get("models", {})
            index = m.get("index", {})
            rows.append(
                {
                    "version": version,
                    "created_at": m.get("created_at", ""),
                    "model": kind,
                    "customers": m.get("counts", {}).get("customers"),
                    "products": m.get("counts", {}).get("products"),
                    "interactions": m.get("counts", {}).get("interactions"),
                    "metrics": models.get(kind) or models.get("als") or {},
                    "baselines": {k: v for k, v in models.items() if k not in (kind, "als")},
                    "index_kind": index.get("kind", ""),
                    "index_recall": index.get("recall"),
                    "published_order": published.index(version) if version in published else None,
                    "current": version == current,
                    "serving": version == engine.version,
                    "error": m.get("error"),
                }
            )
        rows.sort(key=lambda r: str(r["created_at"] or r["version"]), reverse=True)
        return {
            "serving": engine.version,
            "loaded_at": engine.loaded_at,
            "current": current,
            "history": published,
            "versions": rows,
        }

    def traffic(self) -> dict[str, Any]:
        return {"interval_s": self.sampler.interval, **traffic.report(self.sampler.samples())}

    def customers(self) -> dict[str, Any]:
        """Customers by segment and lifecycle stage, as counted by the live features load."""
        store = self.realtime.store
        if store is None:
            return _unavailable("no feature store is configured (REDIS_URL)")
        try:
            meta = store.live_meta()
        except RedisError as exc:
            return _unavailable(f"the feature store did not answer: {exc}")
        if meta is None:
            return _unavailable(
                "no features are loaded: run `recsvc features load` (it counts customers by "
                "segment and stage)"
            )
        if "segments" not in meta:
            return {
                "available": False,
                "reason": "the live features were loaded without analytics (or by an older "
                "recsvc): run `recsvc features load` again to count segments and stages",
                "meta": meta,
            }
        return {"available": True, **meta}

    def offers(self) -> dict[str, Any]:
        """Per offer of the catalog: impressions, clicks, redemptions, rates, spend and the
        share of its budget used."""
        catalog = self.offer_service.loaded
        if catalog is None:
            return _unavailable("no offer catalog is configured (RECSVC_OFFERS)")
        store = self.realtime.store
        if store is None:
            return _unavailable("no feature store is configured (REDIS_URL)")
        ids = [o.offer_id for o in catalog.offers]
        try:
            totals = offer_usage.offer_totals(store, ids)
        except RedisError as exc:
            return _unavailable(f"the feature store did not answer: {exc}")
        rows = []
        for offer in catalog.offers:
            stats, spent = totals[offer.offer_id]
            rows.append(
                {
                    "offer_id": offer.offer_id,
                    "title": offer.title,
                    "kind": offer.kind,
                    "impressions": stats.impressions,
                    "clicks": stats.clicks,
                    "redemptions": stats.redemptions,
                    "click_rate": _ratio(stats.clicks, stats.impressions),
                    "redemption_rate": _ratio(stats.redemptions, stats.impressions),
                    "spent": spent,
                    "budget": offer.budget,
                    "budget_used": _ratio(spent, offer.budget) if offer.budget else None,
                    "by_segment": {
                        seg: {
                            "impressions": s.impressions,
                            "clicks": s.clicks,
                            "redemptions": s.redemptions,
                        }
                        for seg, s in stats.by_segment.items()
                    },
                }
            )
        return {"available": True, "catalog_version": catalog.digest[:12], "offers": rows}

    def experiments(self) -> dict[str, Any]:
        arms = traffic.arms(self.sampler.samples()[-1])
        if not arms:
            return {"available": False, "reason": EXPERIMENTS_PENDING, "arms": []}
        return {"available": True, "arms": arms}


def _ratio(part: float, whole: float | None) -> float | None:
    return part / whole if whole else None

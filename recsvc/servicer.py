"""The gRPC servicers: protobuf in, plain types to the engine, protobuf out.

All behaviour lives in ``recsvc.engine``; this module only translates, maps errors to status
codes and logs one structured line per answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc

from formats import bundle as bundles
from formats.errors import InvalidRequest, LimitReached, NotFound, Unavailable
from formats.events import Event
from formats.types import Recommendation
from recsvc.convert import (
    EVENT_STATUS_CODES,
    change_from_pb,
    context_from_pb,
    event_from_pb,
    filter_from_pb,
    items_to_pb,
    result_to_pb,
)
from recsvc.customer_service import Customers
from recsvc.engine.slots import Levers
from recsvc.experiments import Experiments, ExperimentsError
from recsvc.model_store import ModelStore
from recsvc.offer_service import OfferService
from recsvc.offers import OfferCatalogError
from recsvc.product_service import ProductService
from recsvc.promotions import PromotionsError, PromotionService
from recsvc.realtime import Realtime
from recsvc.reloads import ReloadSignals
from recsvc.trending import Trending
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc

log = logging.getLogger("recsvc.requests")
T = TypeVar("T")


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort raises


def call(context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
    """Run ``fn`` mapping core errors to gRPC status codes."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        _abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the call ran")
    try:
        return fn()
    except InvalidRequest as exc:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except NotFound as exc:
        _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
    except Unavailable as exc:
        _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
    except LimitReached as exc:
        _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
    except (bundles.BundleError, OfferCatalogError, PromotionsError, ExperimentsError) as exc:
        _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))


def _log(rpc: str, rec: Recommendation, **fields: Any) -> None:
    log.info(
        rpc,
        extra={
            "rpc": rpc,
            "recommendation_id": rec.recommendation_id,
            "model_version": rec.model_version,
            "personalized": rec.personalized,
            "items": len(rec.items),
            **({"experiment": rec.experiment, "arm": rec.arm} if rec.experiment else {}),
            **fields,
        },
    )


@dataclass(frozen=True)
class Merchandising:
    """The levers RecommendProducts applies beside the model: promotions and trending."""

    promotions: PromotionService
    trending: Trending

    def levers(self, surface: str, now_ms: int) -> Levers:
        return Levers(self.promotions.active(surface), self.trending.source, now_ms)


class RecommenderServicer(pb_grpc.RecommenderServicer):
    def __init__(
        self,
        store: ModelStore,
        realtime: Realtime | None = None,
        on_fallback: Callable[[str], None] | None = None,
        customers: Customers | None = None,
        offers: OfferService | None = None,
        merchandising: Merchandising | None = None,
        products: ProductService | None = None,
    ) -> None:
        self.store = store
        self.realtime = realtime or Realtime(None)
        self.on_fallback = on_fallback or (lambda kind: None)
        self.customers = customers or Customers(None, list)
        self.offers = offers or OfferService(None, self.realtime)
        self.merchandising = merchandising or Merchandising(
            PromotionService(None, self.realtime), Trending(self.realtime)
        )
        self.products = products or ProductService(Experiments(None, store), self.realtime)

    def RecommendOffers(
        self, request: pb.RecommendOffersRequest, context: grpc.ServicerContext
    ) -> pb.RecommendOffersResponse:
        rec = call(
            context,
            lambda: self.offers.recommend(
                self.store.engine,
                request.customer_id,
                request.limit,
                context_from_pb(request.context),
            ),
        )
        log.info(
            "RecommendOffers",
            extra={
                "rpc": "RecommendOffers",
                "recommendation_id": rec.recommendation_id,
                "customer_id": request.customer_id,
                "offers": [o.offer_id for o in rec.offers],
                "personalized": rec.personalized,
            },
        )
        return pb.RecommendOffersResponse(
            offers=[
                pb.Offer(
                    offer_id=o.offer_id,
                    title=o.title,
                    kind=o.kind,
                    value=o.value,
                    probability=o.probability,
                    expected_value=o.expected_value,
                    reason=o.reason,
                    target_categories=rec.targets[o.offer_id][0],
                    target_products=rec.targets[o.offer_id][1],
                )
                for o in rec.offers
            ],
            recommendation_id=rec.recommendation_id,
            catalog_version=rec.catalog_version,
            personalized=rec.personalized,
        )

    def GetCustomerProfile(
        self, request: pb.GetCustomerProfileRequest, context: grpc.ServicerContext
    ) -> pb.CustomerProfile:
        p = call(context, lambda: self.customers.profile(request.customer_id))
        return pb.CustomerProfile(**vars(p))

    def RecommendProducts(
        self, request: pb.RecommendProductsRequest, context: grpc.ServicerContext
    ) -> pb.RecommendProductsResponse:
        now_ms = int(time.time() * 1000)

        def recommend() -> Recommendation:
            where = context_from_pb(request.context)
            return self.products.recommend(
                request.customer_id,
                request.limit,
                filter_from_pb(request.filter),
                where,
                request.page_token,
                self.merchandising.levers(where.surface, now_ms),
            )

        rec = call(context, recommend)
        self.merchandising.promotions.served(request.customer_id, rec, now_ms)
        if not rec.personalized:
            self.on_fallback("cold_start")
        elif rec.filled_from_popularity:
            self.on_fallback("fill")
        _log("RecommendProducts", rec, customer_id=request.customer_id)
        return pb.RecommendProductsResponse(
            items=items_to_pb(rec.items),
            recommendation_id=rec.recommendation_id,
            model_version=rec.model_version,
            personalized=rec.personalized,
            next_page_token=rec.next_page_token,
            experiment=rec.experiment,
            arm=rec.arm,
        )

    def SimilarProducts(
        self, request: pb.SimilarProductsRequest, context: grpc.ServicerContext
    ) -> pb.SimilarProductsResponse:
        def similar() -> Recommendation:
            return self.products.similar(
                request.product_id, request.limit, filter_from_pb(request.filter)
            )

        rec = call(context, similar)
        _log("SimilarProducts", rec, product_id=request.product_id)
        return pb.SimilarProductsResponse(
            items=items_to_pb(rec.items),
            recommendation_id=rec.recommendation_id,
            model_version=rec.model_version,
            experiment=rec.experiment,
            arm=rec.arm,
        )

    def RankProducts(
        self, request: pb.RankProductsRequest, context: grpc.ServicerContext
    ) -> pb.RankProductsResponse:
        def rank() -> Recommendation:
            return self.products.rank(request.customer_id, list(request.product_ids))

        rec = call(context, rank)
        _log("RankProducts", rec, customer_id=request.customer_id)
        return pb.RankProductsResponse(
            items=items_to_pb(rec.items),
            recommendation_id=rec.recommendation_id,
            model_version=rec.model_version,
            personalized=rec.personalized,
            experiment=rec.experiment,
            arm=rec.arm,
        )

    def TrendingProducts(
        self, request: pb.TrendingProductsRequest, context: grpc.ServicerContext
    ) -> pb.TrendingProductsResponse:
        def trending() -> Recommendation:
            engine = self.store.engine
            self.realtime.sync_catalog(engine)
            rows = self.merchandising.trending.rows(request.category or None)
            if rows is None:
                raise Unavailable(
                    "trending needs the feature store, which is "
                    + ("not configured (REDIS_URL)" if self.realtime.store is None else "down")
                )
            return engine.trending(
                request.category, request.limit, filter_from_pb(request.filter), lambda _: rows
            )

        rec = call(context, trending)
        _log("TrendingProducts", rec, category=request.category)
        return pb.TrendingProductsResponse(
            items=items_to_pb(rec.items),
            recommendation_id=rec.recommendation_id,
            model_version=rec.model_version,
        )


class EventsServicer(pb_grpc.EventsServicer):
    def __init__(
        self,
        store: ModelStore,
        realtime: Realtime,
        on_results: Callable[[dict[str, int]], None] | None = None,
        on_stored: Callable[[list[Event]], None] | None = None,
    ) -> None:
        self.store = store
        self.realtime = realtime
        self.on_results = on_results or (lambda counts: None)
        self.on_stored = on_stored or (lambda events: None)  # newly stored (not duplicates)

    def TrackEvents(
        self, request: pb.TrackEventsRequest, context: grpc.ServicerContext
    ) -> pb.TrackEventsResponse:
        events = [event_from_pb(e) for e in request.events]
        results = call(context, lambda: self.realtime.track(self.store.loaded, events))
        counts = {s: 0 for s in EVENT_STATUS_CODES}
        for r in results:
            counts[r.status] += 1
        self.on_results(counts)
        self.on_stored([e for e, r in zip(events, results, strict=True) if r.status == "accepted"])
        log.info("TrackEvents", extra={"rpc": "TrackEvents", **counts})
        return pb.TrackEventsResponse(
            results=[result_to_pb(r) for r in results],
            accepted=counts["accepted"],
            duplicates=counts["duplicate"],
            rejected=counts["rejected"],
        )


class PrivacyServicer(pb_grpc.PrivacyServicer):
    def __init__(self, customers: Customers) -> None:
        self.customers = customers

    def ForgetCustomer(
        self, request: pb.ForgetCustomerRequest, context: grpc.ServicerContext
    ) -> pb.ForgetCustomerResponse:
        report = call(context, lambda: self.customers.forget(request.customer_id))
        log.info(
            "ForgetCustomer",
            extra={
                "rpc": "ForgetCustomer",
                "keys_removed": report.keys_removed,
                "events_removed": report.events_removed,
            },
        )
        return pb.ForgetCustomerResponse(
            keys_removed=report.keys_removed, events_removed=report.events_removed, tombstoned=True
        )

    def ExportCustomerData(
        self, request: pb.ExportCustomerDataRequest, context: grpc.ServicerContext
    ) -> pb.ExportCustomerDataResponse:
        data = call(context, lambda: self.customers.export(request.customer_id))
        return pb.ExportCustomerDataResponse(json=data)


class AdminServicer(pb_grpc.AdminServicer):
    def __init__(
        self,
        store: ModelStore,
        realtime: Realtime | None = None,
        customers: Customers | None = None,
        offers: OfferService | None = None,
        promotions: PromotionService | None = None,
        experiments: Experiments | None = None,
        signals: ReloadSignals | None = None,
    ) -> None:
        self.store = store
        self.realtime = realtime or Realtime(None)
        self.customers = customers or Customers(None, list)
        self.offers = offers or OfferService(None, self.realtime)
        self.promotions = promotions or PromotionService(None, self.realtime)
        self.experiments = experiments or Experiments(None, store)
        self.signals = signals or ReloadSignals(None)

    def ReloadPromotions(
        self, request: pb.ReloadPromotionsRequest, context: grpc.ServicerContext
    ) -> pb.ReloadPromotionsResponse:
        catalog = call(context, self.promotions.reload)
        active = len(self.promotions.active_any())
        # Then every other worker and replica (recsvc/reloads.py), not only this one.
        call(
            context,
            lambda: self.signals.announce("promotions", {"version": catalog.digest[:12]}),
        )
        log.info("ReloadPromotions", extra={"rpc": "ReloadPromotions", "promotions": len(catalog)})
        return pb.ReloadPromotionsResponse(
            promotions_version=catalog.digest[:12], promotions=len(catalog), active=active
        )

    def ReloadExperiments(
        self, request: pb.ReloadExperimentsRequest, context: grpc.ServicerContext
    ) -> pb.ReloadExperimentsResponse:
        config = call(context, self.experiments.reload)
        enabled = [e for e in config.experiments if e.enabled]
        versions = [self.store.engine.version, *config.versions]
        call(
            context,
            lambda: self.signals.announce("experiments", {"version": config.digest[:12]}),
        )
        log.info(
            "ReloadExperiments",
            extra={"rpc": "ReloadExperiments", "experiments": [e.name for e in enabled]},
        )
        return pb.ReloadExperimentsResponse(
            config_version=config.digest[:12],
            experiments=len(enabled),
            model_versions=list(dict.fromkeys(versions)),
        )

    def ReloadOffers(
        self, request: pb.ReloadOffersRequest, context: grpc.ServicerContext
    ) -> pb.ReloadOffersResponse:
        catalog = call(context, self.offers.reload)
        # Then every other worker and replica (recsvc/reloads.py), not only this one.
        call(
            context,
            lambda: self.signals.announce("offers", {"catalog_version": catalog.digest[:12]}),
        )
        log.info("ReloadOffers", extra={"rpc": "ReloadOffers", "offers": len(catalog)})
        return pb.ReloadOffersResponse(catalog_version=catalog.digest[:12], offers=len(catalog))

    def SetLoyalty(
        self, request: pb.SetLoyaltyRequest, context: grpc.ServicerContext
    ) -> pb.SetLoyaltyResponse:
        tier, points = call(
            context,
            lambda: self.customers.set_loyalty(
                request.customer_id,
                request.tier if request.HasField("tier") else None,
                request.points if request.HasField("points") else None,
                request.points_delta if request.HasField("points_delta") else None,
            ),
        )
        return pb.SetLoyaltyResponse(tier=tier, points=points)

    def UpdateProducts(
        self, request: pb.UpdateProductsRequest, context: grpc.ServicerContext
    ) -> pb.UpdateProductsResponse:
        changes = [change_from_pb(u) for u in request.updates]
        updated = call(context, lambda: self.realtime.update_products(self.store.engine, changes))
        log.info("UpdateProducts", extra={"rpc": "UpdateProducts", "updated": updated})
        return pb.UpdateProductsResponse(updated=updated)

    def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> pb.ModelInfo:
        info = call(context, lambda: self.store.engine.info())
        return pb.ModelInfo(
            version=info.version,
            created_at=info.created_at,
            customers=info.customers,
            products=info.products,
            interactions=info.interactions,
            metrics=info.metrics,
            index_kind=info.index_kind,
            index_recall=info.index_recall,
            loaded_at=info.loaded_at,
        )

    def ReloadModel(
        self, request: pb.ReloadModelRequest, context: grpc.ServicerContext
    ) -> pb.ReloadModelResponse:
        def reload() -> tuple[bool, str]:
            before = self.store.engine.version
            problem = bundles.version_problem(request.version) if request.version else None
            if problem:
                raise InvalidRequest(problem)
            if request.version:
                # Publish first so every worker process (and a restart) serves the same version.
                bundles.publish(self.store.model_dir, request.version)
            _, version = self.store.reload(request.version or None)
            # The watcher may have swapped it in meanwhile: changed is relative to the call.
            return version != before, version

        changed, version = call(context, reload)
        call(context, lambda: self.signals.announce("model", {"version": version}))
        log.info(
            "ReloadModel",
            extra={"rpc": "ReloadModel", "model_version": version, "changed": changed},
        )
        return pb.ReloadModelResponse(changed=changed, version=version)

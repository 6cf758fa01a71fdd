"""The gRPC servicers: protobuf in, plain types to the engine, protobuf out.

All behaviour lives in ``recsvc.engine``; this module only translates, maps errors to status
codes and logs one structured line per answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc

from formats import bundle as bundles
from formats.errors import InvalidRequest, NotFound, Unavailable
from formats.types import EventResult, ProductChange, Recommendation
from recsvc.convert import (
    EVENT_STATUS_CODES,
    context_from_pb,
    event_from_pb,
    filter_from_pb,
    items_to_pb,
    result_to_pb,
)
from recsvc.customer_service import Customers
from recsvc.model_store import ModelStore
from recsvc.offer_service import OfferService
from recsvc.offers import OfferCatalogError
from recsvc.realtime import Realtime
from recsvc.reloads import ReloadSignals
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
    except (bundles.BundleError, OfferCatalogError) as exc:
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
            **fields,
        },
    )


class RecommenderServicer(pb_grpc.RecommenderServicer):
    def __init__(
        self,
        store: ModelStore,
        realtime: Realtime | None = None,
        on_fallback: Callable[[str], None] | None = None,
        customers: Customers | None = None,
        offers: OfferService | None = None,
    ) -> None:
        self.store = store
        self.realtime = realtime or Realtime(None)
        self.on_fallback = on_fallback or (lambda kind: None)
        self.customers = customers or Customers(None, list)
        self.offers = offers or OfferService(None, self.realtime)

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
        def recommend() -> Recommendation:
            engine = self.store.engine
            activity = self.realtime.activity(engine, request.customer_id)
            return engine.recommend(
                request.customer_id,
                request.limit,
                filter_from_pb(request.filter),
                context_from_pb(request.context),
                activity,
            )

        rec = call(context, recommend)
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
        )

    def SimilarProducts(
        self, request: pb.SimilarProductsRequest, context: grpc.ServicerContext
    ) -> pb.SimilarProductsResponse:
        def similar() -> Recommendation:
            engine = self.store.engine
            self.realtime.sync_catalog(engine)
            return engine.similar(request.product_id, request.limit, filter_from_pb(request.filter))

        rec = call(context, similar)
        _log("SimilarProducts", rec, product_id=request.product_id)
        return pb.SimilarProductsResponse(
            items=items_to_pb(rec.items),
            recommendation_id=rec.recommendation_id,
            model_version=rec.model_version,
        )

    def RankProducts(
        self, request: pb.RankProductsRequest, context: grpc.ServicerContext
    ) -> pb.RankProductsResponse:
        def rank() -> Recommendation:
            engine = self.store.engine
            activity = self.realtime.activity(engine, request.customer_id)
            return engine.rank(request.customer_id, list(request.product_ids), activity)

        rec = call(context, rank)
        _log("RankProducts", rec, customer_id=request.customer_id)
        return pb.RankProductsResponse(
            items=items_to_pb(rec.items),
            recommendation_id=rec.recommendation_id,
            model_version=rec.model_version,
            personalized=rec.personalized,
        )


class EventsServicer(pb_grpc.EventsServicer):
    def __init__(
        self,
        store: ModelStore,
        realtime: Realtime,
        on_results: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self.store = store
        self.realtime = realtime
        self.on_results = on_results or (lambda counts: None)

    def TrackEvents(
        self, request: pb.TrackEventsRequest, context: grpc.ServicerContext
    ) -> pb.TrackEventsResponse:
        def track() -> list[EventResult]:
            events = [event_from_pb(e) for e in request.events]
            return self.realtime.track(self.store.loaded, events)

        results = call(context, track)
        counts = {s: 0 for s in EVENT_STATUS_CODES}
        for r in results:
            counts[r.status] += 1
        self.on_results(counts)
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
        signals: ReloadSignals | None = None,
    ) -> None:
        self.store = store
        self.realtime = realtime or Realtime(None)
        self.customers = customers or Customers(None, list)
        self.offers = offers or OfferService(None, self.realtime)
        self.signals = signals or ReloadSignals(None)

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
        changes = [
            ProductChange(
                u.product_id,
                u.stock if u.HasField("stock") else None,
                u.price if u.HasField("price") else None,
            )
            for u in request.updates
        ]
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

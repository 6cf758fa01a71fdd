"""A small Python client for recsvc.v1, returning plain types.

with Client("localhost:50051", token="...") as c:
    rec = c.recommend("C0000001", limit=10)
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import grpc

from formats.events import Event
from formats.types import (
    Context,
    CustomerProfile,
    EventResult,
    Filter,
    ModelInfo,
    ProductChange,
    Recommendation,
)
from recsvc.convert import (
    change_to_pb,
    context_to_pb,
    event_to_pb,
    filter_to_pb,
    items_from_pb,
    result_from_pb,
)
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc


def default_token(model_dir: Path | None = None) -> str | None:
    """RECSVC_TOKEN, else the development token `recsvc serve` wrote beside the model dir."""
    if token := os.environ.get("RECSVC_TOKEN"):
        return token
    model_dir = model_dir or Path(os.environ.get("RECSVC_MODEL_DIR", "var/models"))
    file = model_dir.parent / "dev-token"
    return file.read_text().strip() if file.is_file() else None


class Client:
    def __init__(
        self,
        target: str = "localhost:50051",
        token: str | None = None,
        root_cert: bytes | None = None,
        timeout: float = 5.0,
    ) -> None:
        if root_cert is not None:
            self.channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_cert))
        else:
            self.channel = grpc.insecure_channel(target)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        self.recommender = pb_grpc.RecommenderStub(self.channel)
        self.admin = pb_grpc.AdminStub(self.channel)
        self.events = pb_grpc.EventsStub(self.channel)
        self.privacy = pb_grpc.PrivacyStub(self.channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def recommend(
        self,
        customer_id: str,
        limit: int = 20,
        filter: Filter | None = None,
        context: Context | None = None,
        page_token: str = "",
    ) -> Recommendation:
        """``page_token``: the previous answer's ``next_page_token``, for its next page."""
        reply = self.recommender.RecommendProducts(
            pb.RecommendProductsRequest(
                customer_id=customer_id,
                limit=limit,
                filter=filter_to_pb(filter),
                context=context_to_pb(context),
                page_token=page_token,
            ),
            metadata=self.metadata,
            timeout=self.timeout,
        )
        return Recommendation(
            items_from_pb(reply.items),
            reply.model_version,
            reply.recommendation_id,
            reply.personalized,
            experiment=reply.experiment,
            arm=reply.arm,
            next_page_token=reply.next_page_token,
        )

    def similar(
        self, product_id: str, limit: int = 20, filter: Filter | None = None
    ) -> Recommendation:
        reply = self.recommender.SimilarProducts(
            pb.SimilarProductsRequest(
                product_id=product_id, limit=limit, filter=filter_to_pb(filter)
            ),
            metadata=self.metadata,
            timeout=self.timeout,
        )
        return Recommendation(
            items_from_pb(reply.items),
            reply.model_version,
            reply.recommendation_id,
            experiment=reply.experiment,
            arm=reply.arm,
        )

    def rank(self, customer_id: str, product_ids: list[str]) -> Recommendation:
        reply = self.recommender.RankProducts(
            pb.RankProductsRequest(customer_id=customer_id, product_ids=product_ids),
            metadata=self.metadata,
            timeout=self.timeout,
        )
        return Recommendation(
            items_from_pb(reply.items),
            reply.model_version,
            reply.recommendation_id,
            reply.personalized,
            experiment=reply.experiment,
            arm=reply.arm,
        )

    def model_info(self) -> ModelInfo:
        r = self.admin.GetModelInfo(
            pb.GetModelInfoRequest(), metadata=self.metadata, timeout=self.timeout
        )
        return ModelInfo(
            r.version,
            r.created_at,
            r.customers,
            r.products,
            r.interactions,
            dict(r.metrics),
            r.index_kind,
            r.index_recall,
            r.loaded_at,
        )

    def reload(self, version: str = "") -> tuple[bool, str]:
        r = self.admin.ReloadModel(
            pb.ReloadModelRequest(version=version), metadata=self.metadata, timeout=60
        )
        return r.changed, r.version

    def reload_experiments(self) -> tuple[str, int, list[str]]:
        """(config version, experiments in force, model versions they serve)."""
        r = self.admin.ReloadExperiments(
            pb.ReloadExperimentsRequest(), metadata=self.metadata, timeout=60
        )
        return r.config_version, r.experiments, list(r.model_versions)

    def track(self, events: list[Event]) -> list[EventResult]:
        """Send events; one result per event, in order (UNAVAILABLE: retry the batch)."""
        request = pb.TrackEventsRequest()
        for e in events:
            event_to_pb(e, request.events.add())
        reply = self.events.TrackEvents(request, metadata=self.metadata, timeout=self.timeout)
        return [result_from_pb(r) for r in reply.results]

    def update_products(self, changes: list[ProductChange]) -> int:
        """Stock, price and descriptions; an unknown product with a category is created."""
        request = pb.UpdateProductsRequest()
        for c in changes:
            change_to_pb(c, request.updates.add())
        reply = self.admin.UpdateProducts(request, metadata=self.metadata, timeout=self.timeout)
        return int(reply.updated)

    def trending(
        self, category: str = "", limit: int = 20, filter: Filter | None = None
    ) -> Recommendation:
        reply = self.recommender.TrendingProducts(
            pb.TrendingProductsRequest(category=category, limit=limit, filter=filter_to_pb(filter)),
            metadata=self.metadata,
            timeout=self.timeout,
        )
        return Recommendation(
            items_from_pb(reply.items), reply.model_version, reply.recommendation_id
        )

    def reload_promotions(self) -> tuple[str, int, int]:
        """ReloadPromotions: (version, promotions, active now)."""
        r = self.admin.ReloadPromotions(
            pb.ReloadPromotionsRequest(), metadata=self.metadata, timeout=self.timeout
        )
        return r.promotions_version, r.promotions, r.active

    def profile(self, customer_id: str) -> CustomerProfile:
        r = self.recommender.GetCustomerProfile(
            pb.GetCustomerProfileRequest(customer_id=customer_id),
            metadata=self.metadata,
            timeout=self.timeout,
        )
        fields = {name: getattr(r, name) for name in CustomerProfile.__dataclass_fields__}
        fields["top_categories"] = list(r.top_categories)
        fields["top_categories_model"] = list(r.top_categories_model)
        return CustomerProfile(**fields)

    def set_loyalty(
        self,
        customer_id: str,
        tier: str | None = None,
        points: float | None = None,
        delta: float | None = None,
    ) -> tuple[str, float]:
        request = pb.SetLoyaltyRequest(customer_id=customer_id)
        if tier is not None:
            request.tier = tier
        if points is not None:
            request.points = points
        if delta is not None:
            request.points_delta = delta
        r = self.admin.SetLoyalty(request, metadata=self.metadata, timeout=self.timeout)
        return r.tier, r.points

    def forget(self, customer_id: str) -> tuple[int, int]:
        """ForgetCustomer; returns (Redis keys removed, stream events removed)."""
        r = self.privacy.ForgetCustomer(
            pb.ForgetCustomerRequest(customer_id=customer_id),
            metadata=self.metadata,
            timeout=60,
        )
        return r.keys_removed, r.events_removed

    def export_data(self, customer_id: str) -> str:
        r = self.privacy.ExportCustomerData(
            pb.ExportCustomerDataRequest(customer_id=customer_id),
            metadata=self.metadata,
            timeout=60,
        )
        return str(r.json)

    def offers(
        self, customer_id: str, limit: int = 3, context: Context | None = None
    ) -> tuple[list[pb.Offer], str, bool]:
        """RecommendOffers: (offers, recommendation_id, personalized)."""
        r = self.recommender.RecommendOffers(
            pb.RecommendOffersRequest(
                customer_id=customer_id,
                limit=limit,
                context=context_to_pb(context),
            ),
            metadata=self.metadata,
            timeout=self.timeout,
        )
        return list(r.offers), r.recommendation_id, r.personalized

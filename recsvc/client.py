"""A small Python client for recsvc.v1, returning plain types.

with Client("localhost:50051", token="...") as c:
    rec = c.recommend("C0000001", limit=10)

Several replicas: ``Client("10.0.0.1:50051,10.0.0.2:50051")`` spreads calls round robin and
retries UNAVAILABLE on another replica (SERVICE_CONFIG, also documented in docs/api.md).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

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

# Any gRPC client can use this service config (docs/api.md): spread calls over every address
# the target resolves to (round_robin; the default pick_first sends everything to one), and
# retry a call that failed UNAVAILABLE (a replica stopped or died, Redis failing over) on
# another replica. Every RPC may be retried: reads are read-only, TrackEvents and redemptions
# are deduplicated by event_id, reloads and UpdateProducts set values. Not SetLoyalty: a
# points_delta applied twice would count twice.
SERVICE_CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [
                {"service": "recsvc.v1.Recommender"},
                {"service": "recsvc.v1.Events"},
                {"service": "recsvc.v1.Privacy"},
                {"service": "recsvc.v1.Admin"},
            ],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.05s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        },
        {"name": [{"service": "recsvc.v1.Admin", "method": "SetLoyalty"}]},
    ],
    # Retries stop while more than half of the last ~10 calls failed: no retry storm when
    # every replica is down.
    "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
}


def channel_target(addresses: str | Sequence[str]) -> str:
    """One address as given; several ("host:port,host:port" or a list) as gRPC's static
    ``ipv4:``/``ipv6:`` target over their resolved addresses, so round_robin sees them all.
    (In production a DNS name with one record per replica, ``dns:///recsvc.internal:50051``,
    or a gRPC-aware load balancer does the same without a list.)"""
    if isinstance(addresses, str):
        addresses = [a.strip() for a in addresses.split(",") if a.strip()]
    if not addresses:
        raise ValueError("no server address given")
    if len(addresses) == 1:
        return addresses[0]
    resolved: list[tuple[socket.AddressFamily, str]] = []
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"{address!r}: expected HOST:PORT")
        try:
            infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ValueError(f"{address!r}: cannot resolve {host}: {exc}") from None
        family, *_, sockaddr = infos[0]
        ip = str(sockaddr[0])
        resolved.append((family, f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"))
    families = {family for family, _ in resolved}
    if len(families) > 1:
        raise ValueError("give all IPv4 or all IPv6 addresses (gRPC cannot mix them in one target)")
    scheme = "ipv6" if families == {socket.AF_INET6} else "ipv4"
    return f"{scheme}:" + ",".join(a for _, a in resolved)


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
        target: str | Sequence[str] = "localhost:50051",
        token: str | None = None,
        root_cert: bytes | None = None,
        timeout: float = 5.0,
    ) -> None:
        """``target``: one address, or several replicas ("a:50051,b:50051" or a list):
        calls go round robin over them and UNAVAILABLE is retried (SERVICE_CONFIG)."""
        options: list[tuple[str, Any]] = [
            ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
            ("grpc.enable_retries", 1),
        ]
        resolved = channel_target(target)
        names = target.split(",") if isinstance(target, str) else list(target)
        if root_cert is not None and resolved.startswith(("ipv4:", "ipv6:")):
            # The certificate names the host, not the addresses it resolved to.
            host = names[0].strip().rpartition(":")[0].strip("[]")
            options.append(("grpc.ssl_target_name_override", host))
        if root_cert is not None:
            credentials = grpc.ssl_channel_credentials(root_cert)
            self.channel = grpc.secure_channel(resolved, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(resolved, options=options)
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

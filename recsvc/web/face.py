"""Starts the web face of one server process: the RPC endpoint over the process's handlers,
the dashboard, the traffic sampler, and the listener."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

from recsvc.auth import Auth
from recsvc.config import ServeConfig
from recsvc.model_store import ModelStore
from recsvc.offer_service import OfferService
from recsvc.realtime import Realtime
from recsvc.web import dashboard, traffic
from recsvc.web.app import build_app
from recsvc.web.dashboard_data import DashboardData
from recsvc.web.handlers import Handlers
from recsvc.web.rpc import RpcEndpoint
from recsvc.web.serve import HttpServer, bind


@dataclass
class Web:
    server: HttpServer
    sampler: traffic.Sampler

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self, grace: float = 5.0) -> None:
        self.sampler.stop()
        self.server.stop(grace)


@dataclass(frozen=True)
class Parts:
    """What the web face serves from: the process's handlers, auth and core objects."""

    handlers: Handlers
    auth: Auth
    executor: Executor
    store: ModelStore
    realtime: Realtime
    offers: OfferService


def start_web(config: ServeConfig, parts: Parts, reuse_port: bool) -> Web:
    """Bind RECSVC_HTTP_PORT and serve; HttpError when the port cannot be had."""
    sock = bind(config.host, config.http_port, reuse_port)
    sampler = traffic.Sampler()
    data = DashboardData(parts.store, parts.realtime, parts.offers, sampler)
    app = build_app(
        RpcEndpoint(parts.handlers, parts.executor, config.concurrency_limit),
        dashboard.routes(data, parts.auth, parts.executor),
        config.cors_origins,
    )
    tls = (config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key else None
    server = HttpServer(app, sock, tls, config.trusted_proxies)
    try:
        server.start()
    except BaseException:
        sock.close()
        raise
    sampler.start()
    return Web(server, sampler)

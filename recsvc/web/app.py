"""The ASGI app of the HTTP port: RPC paths to the RPC endpoint, the rest to the dashboard's
routes, all behind CORS with the configured allowlist of origins."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from recsvc.web.rpc import RpcEndpoint, is_rpc_path

# What a browser may send and read across origins: the Connect and gRPC-Web headers.
ALLOW_HEADERS = (
    "authorization",
    "content-type",
    "connect-protocol-version",
    "connect-timeout-ms",
    "grpc-timeout",
    "x-grpc-web",
    "x-user-agent",
)
EXPOSE_HEADERS = ("grpc-status", "grpc-message", "retry-after", "trailer-retry-after")


def build_app(
    rpc: RpcEndpoint, routes: Sequence[BaseRoute], cors_origins: Sequence[str]
) -> ASGIApp:
    pages = Starlette(routes=list(routes))  # with its 404 and 500 handling

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_rpc_path(scope["path"]):
            await rpc(scope, receive, send)
        else:
            await pages(scope, receive, send)

    # No credentials mode: tokens travel in the Authorization header, never in cookies. An
    # origin not on the list gets no Access-Control-Allow-Origin, so browsers keep its pages
    # from reading any answer.
    return CORSMiddleware(
        app,
        allow_origins=list(cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=list(ALLOW_HEADERS),
        expose_headers=list(EXPOSE_HEADERS),
        max_age=3600,
    )

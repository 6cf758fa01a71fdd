"""The dashboard's routes: the page and its static files at /dashboard (no secrets in them:
the page asks for an admin token and keeps it in session storage), and its JSON at
/dashboard/api/<part>, which needs a token with the `admin` scope, checked by recsvc.auth as
every RPC is."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from recsvc.auth import Auth, Denied
from recsvc.web.dashboard_data import DashboardData
from recsvc.web.protocol import HTTP_STATUS, error_json
from recsvc.web.rpc import metadata_of

STATIC = Path(__file__).parent / "static"
# The page runs only its own files: an injected script could read the admin token.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def routes(data: DashboardData, auth: Auth, executor: Executor) -> list[BaseRoute]:
    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "models": data.models,
        "traffic": data.traffic,
        "customers": data.customers,
        "offers": data.offers,
        "experiments": data.experiments,
    }

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "dashboard.html", headers=SECURITY_HEADERS)

    async def api(request: Request) -> Response:
        part = parts.get(request.path_params["part"])
        if part is None:
            return Response(
                orjson.dumps(
                    {"code": "not_found", "message": f"no part; use one of {sorted(parts)}"}
                ),
                404,
                media_type="application/json",
            )
        decision = auth.check_scope("admin", "the dashboard", metadata_of(request.scope))
        if isinstance(decision, Denied):
            headers = {"cache-control": "no-store"}
            if decision.retry_after is not None:
                headers["retry-after"] = str(math.ceil(decision.retry_after))
            return Response(
                error_json(decision.code, decision.message),
                HTTP_STATUS[decision.code],
                headers=headers,
                media_type="application/json",
            )
        # Files and Redis: on a request thread, never on the event loop.
        body = await asyncio.get_running_loop().run_in_executor(executor, part)
        return Response(
            orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
            media_type="application/json",
            headers={"cache-control": "no-store"},
        )

    async def home(request: Request) -> Response:
        return RedirectResponse("/dashboard", 307)

    return [
        Route("/", home),
        Route("/dashboard", page),
        Route("/dashboard/", page),
        Route("/dashboard/api/{part}", api),
        Mount("/dashboard/static", StaticFiles(directory=STATIC), name="static"),
    ]

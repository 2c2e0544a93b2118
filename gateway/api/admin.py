"""Admin endpoints (bearer ``auth.admin_key``): the engines' live state, and live reload.

Kept apart from the public routes: they reveal internals (URLs, process ids) and change the
running configuration, so without an admin key configured they refuse every call (the key check
is :func:`gateway.api.auth.check_admin`, shared with the client keys' check).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from gateway.api.auth import require_admin
from gateway.api.errors import openapi_responses
from gateway.contract import AuthenticationError, EmbedGatewayError, PermissionDeniedError, parse_task
from gateway.reload import Reloader
from gateway.routing import ROUTE_KEYS
from gateway.runtime import Runtime

__all__ = ["router"]


router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses=openapi_responses(AuthenticationError, PermissionDeniedError),
)


@router.get("/engines", summary="Engines, routes, circuit breakers and parity results, live")
async def engines(request: Request) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    snap = runtime.current
    plans: dict[str, Any] = {}
    for key in ROUTE_KEYS:
        try:
            plans[key] = snap.plan(parse_task(key))
        except EmbedGatewayError as exc:
            plans[key] = {"error": exc.message}
    return {
        "generation": snap.generation,
        "routes": dict(snap.routes),
        "serving_now": plans,
        "engines": {n: await runtime.status(snap, e) for n, e in snap.entries.items()},
    }


@router.post("/reload", summary="Re-read the configuration file and apply it (same as SIGHUP)")
async def reload(request: Request) -> dict[str, Any]:
    reloader: Reloader = request.app.state.reloader
    snap = await reloader.reload()
    return {"status": "reloaded", "generation": snap.generation, "routes": dict(snap.routes)}

"""Admin endpoints (bearer ``auth.admin_key``): the engines' live state, live reload, cache flush.

Kept apart from the public routes: they reveal internals (URLs, process ids) and change the
running configuration, so without an admin key configured they refuse every call (the key check
is :func:`gateway.api.auth.check_admin`, shared with the client keys' check).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from gateway.api.auth import require_admin
from gateway.api.errors import openapi_responses
from gateway.api.ops.protocol import CacheFlushResponse, EnginesView, ReloadResponse, ShadowView
from gateway.api.ops.views import engines_view, shadow_view
from gateway.cache import CacheStore
from gateway.errors import AuthenticationError, PermissionDeniedError
from gateway.pool import Pool
from gateway.pool.reload import Reloader
from gateway.obs.context import request_snapshot
from gateway.shadow import Shadow

__all__ = ["router"]


router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses=openapi_responses(AuthenticationError, PermissionDeniedError),
)


@router.get("/engines", response_model=EnginesView, response_model_exclude_unset=True,
            summary="Engines, routes, circuit breakers and parity results, live")
async def engines(request: Request) -> EnginesView:
    pool: Pool = request.app.state.pool
    return await engines_view(pool, request_snapshot())


@router.post("/reload", response_model=ReloadResponse, summary="Re-read the configuration file and apply it (same as SIGHUP)")
async def reload(request: Request) -> ReloadResponse:
    reloader: Reloader = request.app.state.reloader
    snap = await reloader.reload()
    return ReloadResponse(generation=snap.generation, routes=snap.routes)


@router.post("/cache/flush", response_model=CacheFlushResponse,
             summary="Drop every cached embedding: this process's memory tier and the shared Redis keys")
async def flush_cache(request: Request) -> CacheFlushResponse:
    cache: CacheStore = request.app.state.cache
    flushed = await cache.flush()
    return CacheFlushResponse(memory=flushed["memory"], redis=flushed["redis"])


@router.get("/shadow", response_model=ShadowView,
            summary="Live shadow A/B: requests shadowed and dropped, the candidate's cost, neighbourhood agreement")
async def shadow(request: Request) -> ShadowView:
    live: Shadow = request.app.state.shadow
    return shadow_view(live.views())

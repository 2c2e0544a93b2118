"""Operational endpoints: liveness, readiness, Prometheus metrics, and what this server runs.

``/health`` is the one route that never needs a key (liveness probes); the others follow the API
keys like every route (see :mod:`gateway.api.middleware`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import __version__
from gateway.api.cache_view import cache_view
from gateway.api.errors import openapi_responses
from gateway.api.schemas import EngineInfo, Info, LimitsInfo, ReadyResponse
from gateway.api.views import ready_view
from gateway.contract import EngineCapabilities, route_key
from gateway.lifecycle import Gate
from gateway.pool import Pool
from gateway.obs.context import request_snapshot

__all__ = ["router"]

router = APIRouter()


@router.get("/health", summary="Liveness: the process answers (never needs a key)")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: every enabled engine loaded, answering and matching the reference",
    response_model=ReadyResponse,
    responses={**openapi_responses(), 503: {"model": ReadyResponse, "description": "not ready (same body)"}},
)
async def ready(request: Request) -> JSONResponse:
    pool: Pool = request.app.state.pool
    gate: Gate = request.app.state.gate
    readiness, body = await ready_view(pool, request_snapshot(), draining=gate.draining)
    return JSONResponse(body.model_dump(mode="json", exclude_unset=True), status_code=200 if readiness.ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={**openapi_responses(), 200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _engine_info(caps: EngineCapabilities) -> EngineInfo:
    return EngineInfo(
        tasks=sorted(route_key(t) for t in caps.tasks),
        dimensions=caps.dimensions,
        max_input_tokens=caps.max_input_tokens,
        late_chunking=caps.late_chunking,
        model=caps.model,
        revision=caps.revision,
        dtype=caps.dtype,
        device=caps.device,
        max_batch_tokens=caps.max_batch_tokens,
        max_batch_requests=caps.max_batch_requests,
        max_queued_tokens=caps.max_queued_tokens,
        max_queued_inputs=caps.max_queued_inputs,
    )


@router.get("/info", response_model=Info, summary="What this server runs and accepts (like TEI's /info)",
            responses=openapi_responses())
async def info(request: Request) -> Info:
    snap = request_snapshot()
    s = snap.settings
    caps = snap.capabilities()
    # the model as the parity reference (the exact engine) describes it, else the first engine
    main_name = next(iter(n for n in (s.parity.reference, *caps) if n in caps))
    main = caps[main_name]
    return Info(
        version=__version__,
        model=main.model,
        revision=main.revision,
        dimensions=main.dimensions,
        dtype=main.dtype,
        device=main.device,
        engines={n: _engine_info(c) for n, c in caps.items()},
        routes=snap.routes,
        limits=LimitsInfo(
            max_inputs_per_request=s.limits.max_inputs_per_request,
            max_tokens_per_request=s.limits.max_tokens_per_request,
            max_input_tokens=min(c.max_input_tokens for c in caps.values()),
            max_body_bytes=s.limits.max_body_bytes,
            max_concurrent_requests=s.limits.max_concurrent_requests,
            request_timeout=s.limits.request_timeout,
        ),
        api_keys_required=bool(s.auth.client_keys()),
        cache=cache_view(request.app.state.cache),
    )

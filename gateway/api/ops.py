"""Operational endpoints: liveness, readiness, Prometheus metrics, and what this server runs.

With API keys configured, ``/health`` and ``/ready`` still answer without one by default (a
kubelet or load-balancer probe sends none; ``auth.probes_open``), ``/metrics`` only with
``auth.metrics_open`` (see :mod:`gateway.api.middleware`). ``/ready`` reads the state the monitor
keeps (:mod:`gateway.pool.readiness`): answering it never probes an engine.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import __version__
from gateway.api.auth import client_allowed
from gateway.api.cache_view import cache_view
from gateway.api.errors import openapi_responses
from gateway.api.schemas import EngineInfo, Info, LimitsInfo, ReadyResponse, TeiEmbeddingModel, TeiModelType
from gateway.api.views import ready_view
from gateway.contract import EngineCapabilities, route_key
from gateway.lifecycle import Gate
from gateway.obs.context import request_snapshot
from gateway.pool import Pool

__all__ = ["router"]

router = APIRouter()


@router.get("/health", summary="Liveness: the process answers (no key needed unless auth.probes_open is false)")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: every task has an engine able to serve it now (200 ready or degraded, else 503)",
    response_model=ReadyResponse,
    responses={**openapi_responses(), 503: {"model": ReadyResponse, "description": "not ready, or shutting down"}},
)
async def ready(request: Request) -> JSONResponse:
    """200 ``ready`` (every engine in) or ``degraded`` (an engine is out, every task still served);
    503 ``not ready`` (a task has no engine) or ``shutting down``. Only the status for a caller
    without a valid key when keys are configured: the detail names engines, URLs and errors."""
    pool: Pool = request.app.state.pool
    gate: Gate = request.app.state.gate
    snap = request_snapshot()
    detail = client_allowed(snap.settings.auth, request.headers.get("authorization"))
    readiness, body = ready_view(pool, snap, draining=gate.draining, detail=detail)
    return JSONResponse(body.model_dump(mode="json", exclude_unset=True), status_code=readiness.state.http_status)


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
        numerics=caps.numerics,
        max_batch_tokens=caps.max_batch_tokens,
        max_batch_requests=caps.max_batch_requests,
        max_queued_tokens=caps.max_queued_tokens,
        max_queued_inputs=caps.max_queued_inputs,
    )


@router.get("/info", response_model=Info, summary="What this server runs and accepts (TEI's /info keys and more)",
            responses=openapi_responses())
async def info(request: Request) -> Info:
    snap = request_snapshot()
    s = snap.settings
    caps = snap.capabilities()
    # the model as the parity reference (the exact engine) describes it, else the first engine
    main_name = next(iter(n for n in (s.parity.reference, *caps) if n in caps))
    main = caps[main_name]
    max_input = min(c.max_input_tokens for c in caps.values())
    default_model = s.api.default_model
    return Info(
        model_id=main.model or default_model,
        model_sha=main.revision,
        model_dtype=main.dtype or "float32",
        served_model_name=default_model,
        model_type=TeiModelType(embedding=TeiEmbeddingModel(pooling="mean")),
        max_concurrent_requests=s.limits.max_concurrent_requests,
        max_input_length=max_input,
        max_batch_tokens=main.max_batch_tokens or max_input,
        max_batch_requests=main.max_batch_requests,
        max_client_batch_size=s.limits.max_inputs_per_request,
        auto_truncate=s.api.auto_truncate,
        tokenization_workers=main.tokenization_workers or 1,
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
            max_input_tokens=max_input,
            max_body_bytes=s.limits.max_body_bytes,
            max_concurrent_requests=s.limits.max_concurrent_requests,
            request_timeout=s.limits.request_timeout,
        ),
        api_keys_required=bool(s.auth.client_keys()),
        cache=cache_view(request.app.state.cache),
    )

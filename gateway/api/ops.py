"""Operational endpoints: liveness, readiness, Prometheus metrics, and what this server runs.

With API keys configured, ``/health`` and ``/ready`` still answer without one by default (a
kubelet or load-balancer probe sends none; ``auth.probes_open``), ``/metrics`` only with
``auth.metrics_open`` (see :mod:`gateway.api.middleware`). ``/ready`` reads the state the monitor
keeps (:mod:`gateway.pool.readiness`): answering it never probes an engine.
"""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import __version__
from gateway.api.auth import client_allowed
from gateway.api.cache_view import cache_view
from gateway.api.errors import openapi_responses
from gateway.api.schemas import (
    EngineInfo,
    Info,
    LimitsInfo,
    ModelInfo,
    ReadyResponse,
    TeiEmbeddingModel,
    TeiModelType,
)
from gateway.api.views import ready_view
from gateway.contract import EngineCapabilities, route_key, task_of_key
from gateway.lifecycle import Gate
from gateway.obs.context import request_snapshot
from gateway.pool import Pool, Snapshot
from gateway.serving.service import resolve_model

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


def _engine_info(caps: EngineCapabilities, model: str | None = None) -> EngineInfo:
    """The wire view of an engine's capabilities: every field both have, by name (one function,
    no field mirrored by hand), the sets as sorted lists."""
    fields = {k: v for k, v in dataclasses.asdict(caps).items() if k in EngineInfo.model_fields}
    fields["tasks"] = sorted(route_key(t) for t in caps.tasks)
    fields["outputs"] = sorted(caps.outputs)
    return EngineInfo(**fields, served_model=model)


@router.get("/info", response_model=Info, summary="What this server runs and accepts (TEI's /info keys and more)",
            responses=openapi_responses())
async def info(request: Request, model: str | None = None) -> Info:
    """The default model's view (what TEI clients read), or ``?model=`` another's; ``models``
    lists every model with its engines, routes and memory."""
    snap = request_snapshot()
    return _info(request, snap, resolve_model(snap, model).model, served=model)


@router.get("/models/{model}/info", response_model=Info, include_in_schema=False, responses=openapi_responses())
async def model_info(request: Request, model: str) -> Info:
    """TEI's ``/info`` for one model (a TEI client whose base URL is ``/models/{model}``)."""
    snap = request_snapshot()
    return _info(request, snap, resolve_model(snap, model).model, served=model)


def _info(request: Request, snap: Snapshot, model: str, served: str | None) -> Info:
    s = snap.settings
    assert snap.catalog is not None
    caps = snap.capabilities(model)
    # the model as its parity reference (the exact engine) describes it, else its first engine
    reference = snap.references.get(model) if snap.references is not None else None
    main_name = next(iter(n for n in (reference, *caps) if n in caps))
    main = caps[main_name]
    max_input = min(c.max_input_tokens for c in caps.values())
    served_name = served or (snap.catalog.default if model == resolve_model(snap, None).model else model)
    return Info(
        model_id=main.model or served_name,
        model_sha=main.revision,
        model_dtype=main.dtype or "float32",
        served_model_name=served_name,
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
        engines={n: _engine_info(c, snap.model_of(n)) for n, c in snap.capabilities().items()},
        routes=snap.model_routes(model),
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
        models={
            m: ModelInfo(
                engines=snap.engines_of(m),
                routes=snap.model_routes(m),
                reference=snap.references.get(m) if snap.references is not None else None,
                resident_bytes=sum(c.resident_bytes or 0 for c in snap.capabilities(m).values()),
                spaces={
                    key: request.app.state.pool.supervisor.space(snap, names[0], task_of_key(key), None, True).id
                    for key, names in snap.model_routes(m).items() if names
                },
            )
            for m in snap.models
        },
    )

"""Operational endpoints: liveness, readiness, Prometheus metrics, and what this server runs.

With API keys configured, ``/health`` and ``/ready`` still answer without one by default (a
kubelet or load-balancer probe sends none; ``auth.probes_open``), ``/metrics`` only with
``auth.metrics_open`` (see :mod:`gateway.api.middleware`). ``/ready`` reads the state the monitor
keeps (:mod:`gateway.pool.readiness`): answering it never probes an engine.

``/models/{model}/info`` is ``/info`` for one model, where a TEI client whose base URL is
``/models/{model}`` looks for it; it is ``/info``'s route (and error shape) under another path.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.api.auth import client_allowed
from gateway.api.errors import openapi_responses
from gateway.errors import ModelNotFoundError
from gateway.api.ops.info import info_view
from gateway.api.ops.protocol import Info, ReadyResponse
from gateway.api.ops.views import ready_view
from gateway.lifecycle import Gate
from gateway.obs.context import request_snapshot
from gateway.pool import Pool
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


@router.get("/info", response_model=Info, summary="What this server runs and accepts (TEI's /info keys and more)",
            responses=openapi_responses(ModelNotFoundError))
async def info(request: Request, model: str | None = None) -> Info:
    """The default model's view (what TEI clients read), or ``?model=`` another's; ``models``
    lists every model with its engines, routes and memory."""
    snap = request_snapshot()
    return info_view(snap, request.app.state.cache, resolve_model(snap, model).model, served=model,
                     supervisor=request.app.state.pool.supervisor)


@router.get("/models/{model}/info", response_model=Info, include_in_schema=False, responses=openapi_responses())
async def model_info(request: Request, model: str) -> Info:
    """TEI's ``/info`` for one model (a TEI client whose base URL is ``/models/{model}``)."""
    snap = request_snapshot()
    return info_view(snap, request.app.state.cache, resolve_model(snap, model).model, served=model,
                     supervisor=request.app.state.pool.supervisor)

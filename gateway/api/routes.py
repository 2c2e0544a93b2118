"""Routes: validate -> service -> render. No policy here."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from gateway.api.disconnect import cancel_on_disconnect
from gateway.api.errors import openapi_responses
from gateway.api.schemas import (
    ChunkEmbeddingRequest,
    ChunkEmbeddingResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelCard,
    ModelList,
)
from gateway.contract import (
    EngineOverloadedError,
    EngineTimeoutError,
    EngineUnavailableError,
    ModelNotFoundError,
    PayloadTooLargeError,
)
from gateway.postprocess import OutputFormat, encode_vectors
from gateway.runtime import Runtime
from gateway.service import EmbedOutcome, EmbeddingService

__all__ = ["router"]

router = APIRouter()


def _service(request: Request) -> EmbeddingService:
    service: EmbeddingService = request.app.state.service
    return service


def render_embeddings(outcome: EmbedOutcome, output: OutputFormat) -> bytes:
    items = encode_vectors(outcome.vectors, output)
    tokens = sum(outcome.token_counts)
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)],
        "model": outcome.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def render_chunks(outcome: EmbedOutcome, text: str, output: OutputFormat) -> bytes:
    items = encode_vectors(outcome.vectors, output)
    spans = outcome.spans or ()
    tokens = sum(outcome.token_counts)
    data: list[dict[str, Any]] = [
        {"object": "chunk", "index": i, "text": text[a:b], "start": a, "end": b, "embedding": e}
        for i, ((a, b), e) in enumerate(zip(spans, items, strict=True))
    ]
    body = {
        "object": "list",
        "data": data,
        "model": outcome.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _headers(outcome: EmbedOutcome, request_id: str) -> dict[str, str]:
    return {
        "x-embed-engine": outcome.engine,
        "x-queue-time": f"{outcome.queue_seconds * 1000:.2f}",
        "x-inference-time": f"{outcome.inference_seconds * 1000:.2f}",
        "x-request-id": request_id,
    }


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingResponse,
    responses=openapi_responses(
        ModelNotFoundError, PayloadTooLargeError, EngineOverloadedError, EngineUnavailableError, EngineTimeoutError
    ),
    summary="Create embeddings (OpenAI- and Jina-compatible)",
)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> Response:
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    spec = body.to_spec()
    outcome = await cancel_on_disconnect(request, _service(request).embed(spec, request_id=request_id))
    return Response(
        render_embeddings(outcome, spec.output), media_type="application/json", headers=_headers(outcome, request_id)
    )


router.add_api_route(
    "/embeddings", create_embeddings, methods=["POST"], response_model=EmbeddingResponse, include_in_schema=False
)


@router.post(
    "/v1/chunk-embeddings",
    response_model=ChunkEmbeddingResponse,
    responses=openapi_responses(
        ModelNotFoundError, EngineOverloadedError, EngineUnavailableError, EngineTimeoutError
    ),
    summary="Cut one long text into chunks and late-chunk them",
)
async def create_chunk_embeddings(body: ChunkEmbeddingRequest, request: Request) -> Response:
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    spec = body.to_spec()
    outcome = await cancel_on_disconnect(request, _service(request).embed(spec, request_id=request_id))
    text = spec.inputs[0]
    assert isinstance(text, str)
    return Response(
        render_chunks(outcome, text, spec.output), media_type="application/json", headers=_headers(outcome, request_id)
    )


def _card(service: EmbeddingService, name: str) -> ModelCard:
    alias = service.settings.aliases[name]
    return ModelCard(id=name, task=alias.task.value if alias.task else None, dimensions=alias.dimensions)


@router.get("/v1/models", response_model=ModelList, summary="List model aliases")
async def list_models(request: Request) -> ModelList:
    service = _service(request)
    return ModelList(data=[_card(service, n) for n in service.settings.aliases])


@router.get("/v1/models/{model}", response_model=ModelCard, responses=openapi_responses(ModelNotFoundError))
async def get_model(model: str, request: Request) -> ModelCard:
    service = _service(request)
    name, _ = service.alias(model)
    return _card(service, name)


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: every enabled engine loaded, answering and matching the reference")
async def ready(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    snap = runtime.current
    engines = {}
    for name, entry in snap.entries.items():
        status = await runtime.status(snap, entry)
        engines[name] = {k: status[k] for k in ("ready", "detail", "parity")} | {"circuit": status["circuit"]["state"]}
    ok = bool(engines) and all(e["ready"] for e in engines.values())
    not_ready = [n for n, e in engines.items() if not e["ready"]]
    body: dict[str, Any] = {"status": "ready" if ok else "not ready", "engines": engines}
    if not ok:
        body["not_ready"] = not_ready
    return JSONResponse(body, status_code=200 if ok else 503)

"""Routes: validate -> service -> render. No policy here."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

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
from gateway.context import request_id
from gateway.contract import (
    EngineOverloadedError,
    EngineTimeoutError,
    EngineUnavailableError,
    ModelNotFoundError,
    PayloadTooLargeError,
    ShuttingDownError,
    TooManyRequestsError,
)
from gateway.postprocess import OutputFormat, encode_vectors
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


#: what an embedding route can answer besides 200 (the front door adds 401, 413, 429 and 503)
_WORK_ERRORS = (
    ModelNotFoundError,
    PayloadTooLargeError,
    EngineOverloadedError,
    TooManyRequestsError,
    EngineUnavailableError,
    ShuttingDownError,
    EngineTimeoutError,
)


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingResponse,
    responses=openapi_responses(*_WORK_ERRORS),
    summary="Create embeddings (OpenAI- and Jina-compatible)",
)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> Response:
    rid = request_id()
    spec = body.to_spec()
    outcome = await cancel_on_disconnect(request, _service(request).embed(spec, request_id=rid))
    return Response(render_embeddings(outcome, spec.output), media_type="application/json", headers=_headers(outcome, rid))


@router.post(
    "/v1/chunk-embeddings",
    response_model=ChunkEmbeddingResponse,
    responses=openapi_responses(*_WORK_ERRORS),
    summary="Cut one long text into chunks and late-chunk them",
)
async def create_chunk_embeddings(body: ChunkEmbeddingRequest, request: Request) -> Response:
    rid = request_id()
    spec = body.to_spec()
    outcome = await cancel_on_disconnect(request, _service(request).embed(spec, request_id=rid))
    text = spec.inputs[0]
    assert isinstance(text, str)
    return Response(render_chunks(outcome, text, spec.output), media_type="application/json", headers=_headers(outcome, rid))


def _card(service: EmbeddingService, name: str) -> ModelCard:
    alias = service.settings.aliases[name]
    return ModelCard(id=name, task=alias.task.value if alias.task else None, dimensions=alias.dimensions)


@router.get("/v1/models", response_model=ModelList, summary="List model aliases", responses=openapi_responses())
async def list_models(request: Request) -> ModelList:
    service = _service(request)
    return ModelList(data=[_card(service, n) for n in service.settings.aliases])


@router.get("/v1/models/{model}", response_model=ModelCard, responses=openapi_responses(ModelNotFoundError))
async def get_model(model: str, request: Request) -> ModelCard:
    service = _service(request)
    name, _ = service.alias(model)
    return _card(service, name)


def _add_unprefixed(r: APIRouter) -> None:
    """Every ``/v1/...`` route also without ``/v1``: clients given a base URL without it (the
    openai SDK with ``base_url="http://host:8080"``) call ``/embeddings`` and ``/models``. Kept out
    of the OpenAPI document, which shows each operation once."""
    for route in list(r.routes):
        if isinstance(route, APIRoute) and route.path.startswith("/v1/"):
            r.add_api_route(
                route.path.removeprefix("/v1"),
                route.endpoint,
                methods=sorted(route.methods or ()),
                response_model=route.response_model,
                responses=route.responses,
                include_in_schema=False,
            )


_add_unprefixed(router)

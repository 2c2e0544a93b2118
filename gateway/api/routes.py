"""Routes: validate -> service -> render. No policy here."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from gateway.api.disconnect import cancel_on_disconnect
from gateway.api.errors import openapi_responses
from gateway.api.schemas import (
    ChunkData,
    ChunkEmbeddingRequest,
    ChunkEmbeddingResponse,
    EmbeddingData,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelCard,
    ModelList,
    SparseEmbedding,
    SparseEmbeddingData,
    Usage,
    dump_json,
)
from gateway.cache import cache_mode
from gateway.contract import EngineOverloadedError, EngineTimeoutError, EngineUnavailableError, PayloadTooLargeError
from gateway.errors import ModelNotFoundError, ShuttingDownError, TooManyRequestsError
from gateway.obs.context import current_request, request_snapshot
from gateway.serving.postprocess import encode_vectors
from gateway.pool import Snapshot
from gateway.serving.service import EmbeddingService, EmbedOutcome, resolve_model
from gateway.serving.spec import EmbeddingSpec, OutputFormat

__all__ = ["router"]

router = APIRouter()


def embedding_service(request: Request) -> EmbeddingService:
    service: EmbeddingService = request.app.state.service
    return service


def _usage(outcome: EmbedOutcome) -> Usage:
    tokens = sum(outcome.token_counts)
    return Usage.model_construct(prompt_tokens=tokens, total_tokens=tokens)


def render_embeddings(outcome: EmbedOutcome, output: OutputFormat) -> bytes:
    items: list[Any] = (
        [list(m) for m in outcome.multivectors] if outcome.multivectors is not None
        else encode_vectors(outcome.vectors, output)
    )
    if outcome.sparse is not None:
        data: list[EmbeddingData] = [
            SparseEmbeddingData.model_construct(
                index=i, embedding=e,
                sparse_embedding=SparseEmbedding.model_construct(indices=sp.indices.tolist(), values=sp.values.tolist()),
            )
            for i, (e, sp) in enumerate(zip(items, outcome.sparse, strict=True))
        ]
    else:
        data = [EmbeddingData.model_construct(index=i, embedding=e) for i, e in enumerate(items)]
    return dump_json(EmbeddingResponse.model_construct(data=data, model=outcome.model, usage=_usage(outcome)))


def render_chunks(outcome: EmbedOutcome, text: str, output: OutputFormat) -> bytes:
    items = encode_vectors(outcome.vectors, output)
    spans = outcome.spans or ()
    return dump_json(ChunkEmbeddingResponse.model_construct(
        data=[
            ChunkData.model_construct(index=i, text=text[a:b], start=a, end=b, embedding=e)
            for i, ((a, b), e) in enumerate(zip(spans, items, strict=True))
        ],
        model=outcome.model,
        usage=_usage(outcome),
    ))


def _with_cache_mode(spec: EmbeddingSpec, request: Request) -> EmbeddingSpec:
    """The request's cache opt-out (``x-embed-cache``, ``Cache-Control``) on its spec."""
    mode = cache_mode(request.headers.get("x-embed-cache"), request.headers.get("cache-control"))
    return spec if mode == spec.cache else dataclasses.replace(spec, cache=mode)


def _respond(body: bytes) -> Response:
    """The rendered body with the headers of what served it (from the request's context)."""
    ctx = current_request.get()
    assert ctx is not None
    return Response(body, media_type="application/json", headers={
        "x-embed-engine": ctx.engine,
        "x-embed-cache": ctx.cache,
        "x-queue-time": f"{ctx.queue_seconds * 1000:.2f}",
        "x-inference-time": f"{ctx.inference_seconds * 1000:.2f}",
        "x-request-id": ctx.request_id,
    })


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
    spec = _with_cache_mode(body.to_spec(), request)
    outcome = await cancel_on_disconnect(request, embedding_service(request).embed(spec))
    return _respond(render_embeddings(outcome, spec.output))


@router.post(
    "/v1/chunk-embeddings",
    response_model=ChunkEmbeddingResponse,
    responses=openapi_responses(*_WORK_ERRORS),
    summary="Cut one long text into chunks and late-chunk them",
)
async def create_chunk_embeddings(body: ChunkEmbeddingRequest, request: Request) -> Response:
    spec = _with_cache_mode(body.to_spec(), request)
    outcome = await cancel_on_disconnect(request, embedding_service(request).embed(spec))
    text = spec.inputs[0]
    assert isinstance(text, str)
    return _respond(render_chunks(outcome, text, spec.output))


def _card(snap: Snapshot, name: str) -> ModelCard:
    """One name as ``/v1/models`` lists it, with what its model offers (from its engines' capabilities)."""
    resolved = resolve_model(snap, name)
    caps = list(snap.capabilities(resolved.model).values())
    tasks = [k for k, names in snap.model_routes(resolved.model).items() if names]
    return ModelCard(
        id=name,
        task=None if resolved.task is None else str(resolved.task),
        dimensions=resolved.dimensions,
        model=resolved.model,
        tasks=tasks,
        max_dimensions=max((c.dimensions for c in caps), default=None),
        matryoshka=all(c.matryoshka for c in caps) if caps else None,
        outputs=sorted({o for c in caps for o in c.outputs}),
    )


@router.get("/v1/models", response_model=ModelList, summary="List models and their aliases", responses=openapi_responses())
async def list_models() -> ModelList:
    snap = request_snapshot()
    assert snap.catalog is not None
    return ModelList(data=[_card(snap, n) for n in snap.catalog.aliases])


@router.get("/v1/models/{model}", response_model=ModelCard, responses=openapi_responses(ModelNotFoundError))
async def get_model(model: str) -> ModelCard:
    snap = request_snapshot()
    return _card(snap, resolve_model(snap, model).name)


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

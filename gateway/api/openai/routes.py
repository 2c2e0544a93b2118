"""The OpenAI/Jina dialect's routes: validate -> service -> render. No policy here.

``POST /v1/embeddings`` (OpenAI's and Jina's fields in one body), ``POST /v1/chunk-embeddings``
and ``GET /v1/models``; every ``/v1`` route also without the prefix. Errors are rendered in
OpenAI's shape plus Jina's ``detail`` by the app's handlers (:mod:`gateway.api.errors`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from gateway.api.body import JsonBodyRoute
from gateway.api.errors import openapi_responses
from gateway.api.openai.protocol import (
    ChunkEmbeddingRequest,
    ChunkEmbeddingResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelCard,
    ModelList,
)
from gateway.api.openai.render import model_card, render_chunks, render_embeddings
from gateway.api.policy import route_policy
from gateway.api.services import embed_request, served_headers
from gateway.contract import (
    EngineOverloadedError,
    EngineTimeoutError,
    EngineUnavailableError,
    PayloadTooLargeError,
    route_key,
    task_of_key,
)
from gateway.errors import ModelNotFoundError, ShuttingDownError, TooManyRequestsError
from gateway.obs.context import current_request, request_snapshot
from gateway.pool import Snapshot, Supervisor
from gateway.serving.service import resolve_model

__all__ = ["router"]

#: the embedding routes read their JSON body in one pass (gateway/api/body.py)
router = APIRouter(route_class=JsonBodyRoute)


def _respond(body: bytes) -> Response:
    """The rendered body with the headers of what served it, and whether the cache did."""
    ctx = current_request.get()
    assert ctx is not None
    return Response(body, media_type="application/json", headers={**served_headers(), "x-embed-cache": ctx.cache})


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
@route_policy(work=True)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> Response:
    spec = body.to_spec()
    outcome = await embed_request(request, spec)
    return _respond(render_embeddings(outcome, spec.output))


@router.post(
    "/v1/chunk-embeddings",
    response_model=ChunkEmbeddingResponse,
    responses=openapi_responses(*_WORK_ERRORS),
    summary="Cut one long text into chunks and late-chunk them",
)
@route_policy(work=True)
async def create_chunk_embeddings(body: ChunkEmbeddingRequest, request: Request) -> Response:
    spec = body.to_spec()
    outcome = await embed_request(request, spec)
    text = spec.inputs[0]
    assert isinstance(text, str)
    return _respond(render_chunks(outcome, text, spec.output))


def _card(snap: Snapshot, name: str, supervisor: Supervisor) -> ModelCard:
    """One name as ``/v1/models`` lists it, with what its model offers (its engines' capabilities)
    and its vector spaces (of the engine each task goes to first)."""
    resolved = resolve_model(snap, name)
    routes = snap.model_routes(resolved.model)
    tasks = [k for k, names in routes.items() if names]
    own_key = route_key(resolved.task)
    spaces: dict[str, dict[str, str]] = {}
    for key in tasks:
        widths = [None, resolved.dimensions] if key == own_key and resolved.dimensions else [None]
        for dims in widths:
            space = supervisor.space(snap, routes[key][0], task_of_key(key), dims, True)
            spaces.setdefault(key, {})[str(space.dimensions)] = space.id
    return model_card(resolved, list(snap.capabilities(resolved.model).values()), tasks, spaces)


@router.get("/v1/models", response_model=ModelList, summary="List models and their aliases", responses=openapi_responses())
async def list_models(request: Request) -> ModelList:
    snap = request_snapshot()
    assert snap.catalog is not None
    supervisor = request.app.state.pool.supervisor
    return ModelList(data=[_card(snap, n, supervisor) for n in snap.catalog.aliases])


@router.get("/v1/models/{model}", response_model=ModelCard, responses=openapi_responses(ModelNotFoundError))
async def get_model(model: str, request: Request) -> ModelCard:
    snap = request_snapshot()
    return _card(snap, resolve_model(snap, model).name, request.app.state.pool.supervisor)


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

"""Text Embeddings Inference's routes on the same port: validate -> service -> render, in TEI's terms.

Users arriving from TEI (which cannot load jina-embeddings-v3) keep their clients: huggingface_hub's
``InferenceClient(model=URL)`` posts to the URL itself (``POST /``), LlamaIndex's
``TextEmbeddingsInference`` to ``/embed``. Vectors come from the same :class:`EmbeddingService`
and post-processing as ``/v1/embeddings``, so they are identical for the same input and task.
Errors raised here are rendered in TEI's shape by :class:`TeiRoute`
(:mod:`gateway.api.tei.errors`), never in OpenAI's. Every route is also served under
``/models/{model}``, a TEI client's base URL for one model of several.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from gateway.api.policy import route_policy
from gateway.api.services import embed_request, served_headers, token_service
from gateway.api.tei.errors import TEI_ERROR_TABLE, tei_error, tei_validation_error
from gateway.api.tei.protocol import (
    TeiDecodeRequest,
    TeiDecodeResponse,
    TeiEmbedAllRequest,
    TeiEmbedAllResponse,
    TeiEmbedRequest,
    TeiEmbedResponse,
    TeiEmbedSparseRequest,
    TeiEmbedSparseResponse,
    TeiErrorResponse,
    TeiTokenizeRequest,
    TeiTokenizeResponse,
)
from gateway.api.tei.render import json_body, render_sparse, render_tokens
from gateway.contract import EmbedGatewayError
from gateway.obs.context import request_snapshot
from gateway.serving.service import EmbedOutcome
from gateway.serving.spec import EmbeddingSpec

__all__ = ["TeiRoute", "router"]


class TeiRoute(APIRoute):
    """A route whose errors (the tree's, and body validation) come back in TEI's shape."""

    #: read by :func:`gateway.api.policy.policy_of` (the front door answers in this shape too)
    dialect = "tei"

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def tei_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except EmbedGatewayError as err:
                return tei_error(err)
            except RequestValidationError as err:
                return tei_validation_error(err)
            except HTTPException as err:
                if err.status_code != 400:  # FastAPI's "There was an error parsing the body"
                    raise
                return tei_validation_error(RequestValidationError([{"type": "json_invalid", "loc": ("body",)}]))

        return tei_handler


router = APIRouter(route_class=TeiRoute, tags=["TEI-compatible"])


def _responses() -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {400: {"model": TeiErrorResponse, "description": "Empty"}}
    for cls, (status, type_) in TEI_ERROR_TABLE.items():
        out.setdefault(status, {"model": TeiErrorResponse, "description": f"{type_} ({cls.__name__})"})
    return out


_RESPONSES = _responses()


def _auto_truncate() -> bool:
    return request_snapshot().settings.api.auto_truncate


def _for_model(spec: EmbeddingSpec, model: str | None) -> EmbeddingSpec:
    """TEI's requests have no model field: the default model, or the one the path
    (``/models/{model}/embed``) or ``?model=`` names."""
    return spec if model is None else dataclasses.replace(spec, model=model)


async def _embed(body: Any, request: Request, model: str | None) -> EmbedOutcome:
    """The body's spec, for ``model``, served (its headers: cache opt-out, pinned space)."""
    return await embed_request(request, _for_model(body.to_spec(auto_truncate=_auto_truncate()), model))


def _respond(body: bytes, outcome: EmbedOutcome) -> Response:
    """The body with TEI's headers, of what served it (from the request's context)."""
    return Response(body, media_type="application/json",
                    headers={**served_headers(), "x-compute-tokens": str(sum(outcome.token_counts))})


@router.post(
    "/embed",
    response_model=TeiEmbedResponse,
    responses=_RESPONSES,
    summary="Embed (TEI-compatible): one row per input",
)
@route_policy(work=True)
async def embed(body: TeiEmbedRequest, request: Request, model: str | None = None) -> Response:
    outcome = await _embed(body, request, model)
    return _respond(json_body(outcome.vectors), outcome)


# huggingface_hub's InferenceClient (and LangChain on it) posts to the URL it is given; SageMaker-style
# deployments post to /invocations: TEI routes both to /embed for embedding models.
for _path in ("/", "/invocations"):
    router.add_api_route(
        _path, embed, methods=["POST"], response_model=TeiEmbedResponse, responses=_RESPONSES, include_in_schema=False
    )


@router.post(
    "/embed_all",
    response_model=TeiEmbedAllResponse,
    responses=_RESPONSES,
    summary="Every token's last hidden state (TEI-compatible; <s>, instruction and </s> included)",
)
@route_policy(work=True)
async def embed_all(body: TeiEmbedAllRequest, request: Request, model: str | None = None) -> Response:
    outcome = await _embed(body, request, model)
    return _respond(json_body(list(outcome.token_states or ())), outcome)


@router.post(
    "/embed_sparse",
    response_model=TeiEmbedSparseResponse,
    responses=_RESPONSES,
    summary="Sparse (lexical) weights per input (TEI-compatible shape), for models with a sparse output",
)
@route_policy(work=True)
async def embed_sparse(body: TeiEmbedSparseRequest, request: Request, model: str | None = None) -> Response:
    outcome = await _embed(body, request, model)
    return _respond(render_sparse(outcome.sparse or ()), outcome)


@router.post(
    "/tokenize",
    response_model=TeiTokenizeResponse,
    responses=_RESPONSES,
    summary="Tokenise (TEI-compatible): ids, texts and UTF-8 byte offsets",
)
@route_policy(engine=True)
async def tokenize(body: TeiTokenizeRequest, request: Request, model: str | None = None) -> Response:
    items = await token_service(request).tokenize(
        body.texts(), body.task(), task_given=body.prompt_name is not None, add_special_tokens=body.add_special_tokens,
        model=model,
    )
    return Response(render_tokens(items), media_type="application/json")


@router.post(
    "/decode",
    response_model=TeiDecodeResponse,
    responses=_RESPONSES,
    summary="Decode token ids to text (TEI-compatible)",
)
@route_policy(engine=True)
async def decode(body: TeiDecodeRequest, request: Request, model: str | None = None) -> Response:
    texts = await token_service(request).decode(body.sequences(), skip_special_tokens=body.skip_special_tokens, model=model)
    return Response(json_body(texts), media_type="application/json")


def _add_per_model(r: APIRouter) -> None:
    """Every TEI route also under ``/models/{model}``: a TEI client reaches any model by its base
    URL (huggingface_hub's ``InferenceClient(model="http://host:8080/models/bge-m3")`` posts to
    it, LlamaIndex adds ``/embed``). Kept out of the OpenAPI document (``?model=`` is shown)."""
    for route in list(r.routes):
        if isinstance(route, APIRoute) and route.path in ("/embed", "/embed_all", "/embed_sparse", "/tokenize", "/decode"):
            r.add_api_route(f"/models/{{model}}{route.path}", route.endpoint, methods=sorted(route.methods or ()),
                            response_model=route.response_model, responses=route.responses, include_in_schema=False)
    r.add_api_route("/models/{model}", embed, methods=["POST"], response_model=TeiEmbedResponse,
                    responses=_RESPONSES, include_in_schema=False)


_add_per_model(router)

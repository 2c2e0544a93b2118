"""Text Embeddings Inference's routes on the same port: validate -> service -> render, in TEI's terms.

Users arriving from TEI (which cannot load jina-embeddings-v3) keep their clients: huggingface_hub's
``InferenceClient(model=URL)`` posts to the URL itself (``POST /``), LlamaIndex's
``TextEmbeddingsInference`` to ``/embed``. Vectors come from the same :class:`EmbeddingService`
and post-processing as ``/v1/embeddings``, so they are identical for the same input and task.
Errors raised here are rendered in TEI's shape by :class:`TeiRoute`
(:mod:`gateway.api.tei_errors`), never in OpenAI's.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from itertools import accumulate
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from gateway.api.disconnect import cancel_on_disconnect
from gateway.api.tei_errors import TEI_ERROR_TABLE, tei_error, tei_validation_error
from gateway.api.tei_schemas import (
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
from gateway.contract import EmbedGatewayError, Tokenized
from gateway.obs.context import current_request, request_snapshot
from gateway.api.routes import embedding_service
from gateway.serving.service import EmbedOutcome
from gateway.serving.tokenizing import TokenService

__all__ = ["TeiRoute", "render_tokens", "router"]


class TeiRoute(APIRoute):
    """A route whose errors (the tree's, and body validation) come back in TEI's shape."""

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


def _tokens(request: Request) -> TokenService:
    tokens: TokenService = request.app.state.tokens
    return tokens


def _auto_truncate() -> bool:
    return request_snapshot().settings.api.auto_truncate


def _respond(body: bytes, outcome: EmbedOutcome) -> Response:
    """The body with TEI's headers, of what served it (from the request's context)."""
    ctx = current_request.get()
    assert ctx is not None
    return Response(body, media_type="application/json", headers={
        "x-embed-engine": ctx.engine,
        "x-compute-tokens": str(sum(outcome.token_counts)),
        "x-queue-time": f"{ctx.queue_seconds * 1000:.2f}",
        "x-inference-time": f"{ctx.inference_seconds * 1000:.2f}",
        "x-request-id": ctx.request_id,
    })


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def render_tokens(items: list[Tokenized]) -> bytes:
    """TEI's ``/tokenize`` body: offsets as UTF-8 BYTE offsets into the tokenised string (TEI is
    Rust: its offsets are bytes), ``text`` the token's source text, special tokens without offsets."""
    out = []
    for item in items:
        byte_at = [0, *accumulate(len(ch.encode("utf-8")) for ch in item.text)]
        out.append([
            {"id": t.id, "text": t.piece, "special": True, "start": None, "stop": None}
            if t.special or t.start is None or t.stop is None
            else {"id": t.id, "text": item.text[t.start : t.stop], "special": False,
                  "start": byte_at[t.start], "stop": byte_at[t.stop]}
            for t in item.tokens
        ])
    return _json(out)


@router.post(
    "/embed",
    response_model=TeiEmbedResponse,
    responses=_RESPONSES,
    summary="Embed (TEI-compatible): one row per input",
)
async def embed(body: TeiEmbedRequest, request: Request) -> Response:
    spec = body.to_spec(auto_truncate=_auto_truncate())
    outcome = await cancel_on_disconnect(request, embedding_service(request).embed(spec))
    return _respond(_json(outcome.vectors), outcome)


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
async def embed_all(body: TeiEmbedAllRequest, request: Request) -> Response:
    spec = body.to_spec(auto_truncate=_auto_truncate())
    outcome = await cancel_on_disconnect(request, embedding_service(request).embed(spec))
    return _respond(_json(list(outcome.token_states or ())), outcome)


@router.post(
    "/embed_sparse",
    response_model=TeiEmbedSparseResponse,
    responses=_RESPONSES,
    summary="Sparse (lexical) weights per input (TEI-compatible shape), for models with a sparse output",
)
async def embed_sparse(body: TeiEmbedSparseRequest, request: Request) -> Response:
    spec = body.to_spec(auto_truncate=_auto_truncate())
    outcome = await cancel_on_disconnect(request, embedding_service(request).embed(spec))
    sparse = outcome.sparse or ()
    return _respond(_json([
        [{"index": int(i), "value": float(v)} for i, v in zip(sp.indices, sp.values)] for sp in sparse
    ]), outcome)


@router.post(
    "/tokenize",
    response_model=TeiTokenizeResponse,
    responses=_RESPONSES,
    summary="Tokenise (TEI-compatible): ids, texts and UTF-8 byte offsets",
)
async def tokenize(body: TeiTokenizeRequest, request: Request) -> Response:
    items = await _tokens(request).tokenize(
        body.texts(), body.task(), task_given=body.prompt_name is not None, add_special_tokens=body.add_special_tokens
    )
    return Response(render_tokens(items), media_type="application/json")


@router.post(
    "/decode",
    response_model=TeiDecodeResponse,
    responses=_RESPONSES,
    summary="Decode token ids to text (TEI-compatible)",
)
async def decode(body: TeiDecodeRequest, request: Request) -> Response:
    texts = await _tokens(request).decode(body.sequences(), skip_special_tokens=body.skip_special_tokens)
    return Response(_json(texts), media_type="application/json")

"""The app's request services, as a route of any dialect reaches them.

Why a module: every dialect's routes call the same :class:`EmbeddingService` (so their vectors are
the same) and TEI's tokenising routes the same :class:`TokenService`; reaching them here keeps a
dialect from importing another dialect's routes to find them. ``create_app`` puts them on
``app.state``.
"""

from __future__ import annotations

import dataclasses

from fastapi import Request

from gateway.api.disconnect import cancel_on_disconnect
from gateway.cache import cache_mode
from gateway.obs.context import current_request
from gateway.serving.service import EmbeddingService, EmbedOutcome
from gateway.serving.spec import EmbeddingSpec
from gateway.serving.tokenizing import TokenService

__all__ = ["embed_request", "embedding_service", "served_headers", "token_service", "with_request_headers"]


def embedding_service(request: Request) -> EmbeddingService:
    service: EmbeddingService = request.app.state.service
    return service


def token_service(request: Request) -> TokenService:
    tokens: TokenService = request.app.state.tokens
    return tokens


def with_request_headers(spec: EmbeddingSpec, request: Request) -> EmbeddingSpec:
    """The request's headers on its spec: the cache opt-out (``x-embed-cache``, ``Cache-Control``)
    and the vector space it pins (``x-embed-expect-space``)."""
    mode = cache_mode(request.headers.get("x-embed-cache"), request.headers.get("cache-control"))
    expect = request.headers.get("x-embed-expect-space") or None
    if mode == spec.cache and expect == spec.expect_space:
        return spec
    return dataclasses.replace(spec, cache=mode, expect_space=expect)


async def embed_request(request: Request, spec: EmbeddingSpec) -> EmbedOutcome:
    """What every embedding route of every dialect does: the request's headers on its spec, served
    by the embedding service, the work cancelled if the client leaves."""
    return await cancel_on_disconnect(request, embedding_service(request).embed(with_request_headers(spec, request)))


def served_headers() -> dict[str, str]:
    """The response headers every dialect sends about what served the request (from its context)."""
    ctx = current_request.get()
    assert ctx is not None
    return {
        "x-embed-engine": ctx.engine,
        "x-embed-space": ctx.space,
        "x-queue-time": f"{ctx.queue_seconds * 1000:.2f}",
        "x-inference-time": f"{ctx.inference_seconds * 1000:.2f}",
        "x-request-id": ctx.request_id,
    }

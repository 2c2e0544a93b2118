"""The app's request services, as a route of any dialect reaches them.

Why a module: every dialect's routes call the same :class:`EmbeddingService` (so their vectors are
the same) and TEI's tokenising routes the same :class:`TokenService`; reaching them here keeps a
dialect from importing another dialect's routes to find them. ``create_app`` puts them on
``app.state``.
"""

from __future__ import annotations

import dataclasses

from fastapi import Request

from gateway.cache import cache_mode
from gateway.serving.service import EmbeddingService
from gateway.serving.spec import EmbeddingSpec
from gateway.serving.tokenizing import TokenService

__all__ = ["embedding_service", "token_service", "with_request_headers"]


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

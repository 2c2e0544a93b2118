"""The app's request services, as a route of any dialect reaches them.

Why a module: every dialect's routes call the same :class:`EmbeddingService` (so their vectors are
the same) and TEI's tokenising routes the same :class:`TokenService`; reaching them here keeps a
dialect from importing another dialect's routes to find them. ``create_app`` puts them on
``app.state``.
"""

from __future__ import annotations

from fastapi import Request

from gateway.serving.service import EmbeddingService
from gateway.serving.tokenizing import TokenService

__all__ = ["embedding_service", "token_service"]


def embedding_service(request: Request) -> EmbeddingService:
    service: EmbeddingService = request.app.state.service
    return service


def token_service(request: Request) -> TokenService:
    tokens: TokenService = request.app.state.tokens
    return tokens

"""``create_app(settings, engines=None)``: the FastAPI app and its lifespan.

Engines are injectable so tests run the real app over real HTTP with any implementation of the
contract; by default they are built from the settings (heavy engines import lazily).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway import __version__
from gateway.api.errors import install_error_handlers
from gateway.api.routes import router
from gateway.config import Settings
from gateway.contract import EmbedGatewayError, Engine
from gateway.service import EmbeddingService

__all__ = ["build_engines", "create_app"]

log = logging.getLogger(__name__)


def build_engines(settings: Settings) -> dict[str, Engine]:
    engines: dict[str, Engine] = {}
    if settings.engines.hf.enabled:
        try:
            from engine_hf import HFEngine
        except ImportError as exc:  # torch/transformers are the [hf] extra
            raise RuntimeError(
                "engines.hf is enabled but its dependencies are missing: pip install 'embed-gateway[hf]'"
            ) from exc
        engines["hf"] = HFEngine(settings.engines.hf)
    if not engines:
        raise RuntimeError("no engine is enabled: enable engines.hf (or engines.vllm)")
    return engines


def create_app(settings: Settings, engines: Mapping[str, Engine] | None = None) -> FastAPI:
    chosen = dict(engines) if engines is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        active = chosen if chosen is not None else build_engines(settings)
        started = 0
        for name, engine in active.items():
            try:
                await engine.start()
                started += 1
            except EmbedGatewayError as exc:
                log.error("engine %s failed to start: %s", name, exc.message)
            except Exception as exc:
                log.error("engine %s failed to start: %s: %s", name, type(exc).__name__, exc)
        if not started:
            for engine in active.values():
                await engine.aclose()
            raise RuntimeError("no engine could start; see the log above")
        app.state.service = EmbeddingService(settings, active)
        try:
            yield
        finally:
            for engine in active.values():
                await engine.aclose()

    app = FastAPI(
        title="embed-gateway",
        version=__version__,
        description="OpenAI-compatible embeddings for jina-embeddings-v3, all five task adapters.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(router)
    return app

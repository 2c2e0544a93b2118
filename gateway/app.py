"""``create_app(settings, engines=None)``: the FastAPI app and its lifespan.

Engines are injectable so tests run the real app over real HTTP with any implementation of the
contract; by default they are built from the settings (:func:`gateway.engines.build_engine`;
heavy engines import lazily). The lifespan
starts the engines, runs the parity guard once before the first request, starts the monitor, and
wires live reload (SIGHUP and ``POST /admin/reload``) when the app knows how to re-read its
configuration. Every request passes the front door (:mod:`gateway.api.middleware`: request id,
keys, body size, admission) and, when ``server.cors`` allows origins, CORS before it.
``app.state.shutdown`` is the drain step a :class:`~gateway.lifecycle.GatewayServer` runs on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from gateway import __version__
from gateway.api.errors import install_error_handlers
from gateway.api.middleware import FrontDoor
from gateway.api.openai.routes import router
from gateway.api.ops.admin import router as admin_router
from gateway.api.ops.routes import router as ops_router
from gateway.api.policy import RouteMap
from gateway.api.tei.routes import router as tei_router
from gateway.cache import CacheStore
from gateway.config import Settings
from gateway.contract import Engine
from gateway.engines import build_engine
from gateway.lifecycle import Gate, drain, refreeze_heap
from gateway.obs.metrics import GatewayMetrics
from gateway.pool import EngineBuilder, Monitor, Pool
from gateway.pool.reload import Reloader
from gateway.serving.routing import RouteConfigError
from gateway.serving.service import EmbeddingService
from gateway.serving.tokenizing import TokenService
from gateway.shadow import Shadow
from gateway.startup import QuietStartupFailure, StartupError

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    engines: Mapping[str, Engine] | None = None,
    *,
    reload_settings: Callable[[], Settings] | None = None,
    builder: EngineBuilder | None = None,
    metrics: GatewayMetrics | None = None,
) -> FastAPI:
    """The app. ``reload_settings`` re-reads the configuration (the CLI passes "load the same file
    again"); without it SIGHUP is not handled and ``POST /admin/reload`` answers 409.
    ``builder`` builds engines (at start-up unless injected, and when a reload enables one);
    the default builds them from the settings, reporting to the app's metrics."""
    chosen = dict(engines) if engines is not None else None
    app_metrics = metrics or GatewayMetrics()
    build: EngineBuilder = builder or partial(build_engine, observer=app_metrics.observer)
    gate = Gate()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = Pool(app_metrics, builder=build, reclaim=refreeze_heap)
        try:
            await pool.open(settings, chosen)
        except (StartupError, RouteConfigError) as exc:
            app.state.startup_error = str(exc)  # reported on one line, without a traceback (gateway.startup)
            raise
        monitor = Monitor(pool.supervisor, lambda: pool.current)
        reloader = Reloader(pool, reload_settings)
        app.state.pool = pool
        app.state.reloader = reloader
        app.state.monitor = monitor
        cache = CacheStore(settings.cache)  # lives across reloads: its keys name the engines' identities
        app.state.cache = cache
        service = app.state.service = EmbeddingService(pool, app_metrics, cache)
        shadow = app.state.shadow = Shadow(lambda spec: service.embed(spec, tap=False), observe=app_metrics.shadow_done)
        service.tap = shadow.offer
        app.state.tokens = TokenService(pool)
        app_metrics.watch(pool.supervisor, lambda: None if pool.closed else pool.current, lambda: gate.draining)
        app_metrics.watch_cache(cache)
        app_metrics.watch_shadow(shadow)
        monitor.start()
        hup = _install_sighup(reloader) if reload_settings is not None else False
        try:
            yield
        finally:
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await monitor.stop()
            await shadow.aclose()
            await reloader.aclose()
            await pool.aclose()
            await cache.aclose()

    app = FastAPI(
        title="embed-gateway",
        version=__version__,
        description="OpenAI-compatible embeddings for jina-embeddings-v3, all five task adapters.",
        lifespan=lifespan,
    )
    app.state.metrics = app_metrics
    app.state.gate = gate

    async def shutdown() -> None:
        pool: Pool | None = getattr(app.state, "pool", None)
        if pool is not None:
            await drain(gate, pool.current.settings.server.shutdown_grace, pool.aclose)

    app.state.shutdown = shutdown
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(ops_router)
    app.include_router(admin_router)
    app.include_router(tei_router)
    # each route's policy and dialect, declared on the route itself (the routers are included
    # without a prefix; FastAPI keeps an included router as one entry of app.routes)
    routers = (router, ops_router, admin_router, tei_router)
    routes = RouteMap([*(r for r in app.routes if hasattr(r, "methods")), *(r for rt in routers for r in rt.routes)])
    app.add_middleware(FrontDoor, routes=routes)
    app.add_middleware(QuietStartupFailure)
    cors = settings.server.cors
    if cors.allow_origins:  # outermost: a browser's preflight is answered before any key check
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors.allow_origins,
            allow_methods=cors.allow_methods,
            allow_headers=cors.allow_headers,
            allow_credentials=cors.allow_credentials,
            max_age=cors.max_age,
            expose_headers=["x-request-id", "x-embed-engine", "x-embed-space", "x-embed-cache", "x-queue-time",
                            "x-inference-time",
                            "retry-after"],
        )
    app.openapi = partial(_openapi, app, settings, routes)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI, settings: Settings, routes: RouteMap) -> dict[str, Any]:
    """FastAPI's schema, made true to what the app answers: no 422 (validation errors are 400,
    through the error table) except on the TEI routes, whose 422 is TEI's, and the bearer key
    every route but the open ones takes (``auth.open_paths()`` of the configuration running when
    the schema is first asked for, else of the one the app was created with; built once: a later
    reload that changes ``auth.probes_open`` or ``auth.metrics_open`` does not rebuild it)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        pool: Pool | None = getattr(app.state, "pool", None)
        open_paths = (settings if pool is None or pool.closed else pool.current.settings).auth.open_paths()
        tei = {template for template, _, policy in routes.policies() if policy.dialect == "tei"}
        for path, item in schema.get("paths", {}).items():
            for op in item.values():
                if path not in tei:
                    op.get("responses", {}).pop("422", None)
                if path not in open_paths:
                    op["security"] = [{"bearer": []}, {}]  # a key when the operator configured keys
        components = schema.setdefault("components", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(name, None)
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        app.openapi_schema = schema
    return app.openapi_schema


def _install_sighup(reloader: Reloader) -> bool:
    """SIGHUP re-reads the configuration file. Only the main thread's loop can take signals
    (an app served from a test thread simply has no SIGHUP)."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, reloader.reload_in_background)
    except (ValueError, RuntimeError, NotImplementedError) as exc:
        log.debug("SIGHUP reload not available here: %s", exc)
        return False
    return True

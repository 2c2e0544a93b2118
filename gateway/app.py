"""``create_app(settings, engines=None)``: the FastAPI app and its lifespan.

Engines are injectable so tests run the real app over real HTTP with any implementation of the
contract; by default they are built from the settings (heavy engines import lazily). The lifespan
starts the engines, runs the parity guard once before the first request, starts the monitor, and
wires live reload (SIGHUP and ``POST /admin/reload``) when the app knows how to re-read its
configuration.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway import __version__
from gateway.api.admin import router as admin_router
from gateway.api.errors import install_error_handlers
from gateway.api.routes import router
from gateway.config import Settings
from gateway.contract import Engine
from gateway.metrics import GatewayMetrics
from gateway.monitor import Monitor
from gateway.reload import Reloader
from gateway.runtime import EngineBuilder, Runtime
from gateway.service import EmbeddingService

__all__ = ["build_engine", "build_engines", "create_app"]

log = logging.getLogger(__name__)


def build_engine(name: str, settings: Settings) -> Engine:
    """The engine called ``name`` (``hf`` or ``vllm``) from its ``engines.<name>`` section, not started."""
    if name == "hf":
        try:
            from engine_hf import HFEngine
        except ImportError as exc:  # torch/transformers are the [hf] extra
            raise RuntimeError(
                "engines.hf is enabled but its dependencies are missing: pip install 'embed-gateway[hf]'"
            ) from exc
        return HFEngine(settings.engines.hf)
    if name == "vllm":
        from engine_vllm import VLLMEngine

        return VLLMEngine(settings.engines.vllm)
    raise ValueError(f"unknown engine {name!r}")


def build_engines(settings: Settings) -> dict[str, Engine]:
    engines = {n: build_engine(n, settings) for n in ("vllm", "hf") if getattr(settings.engines, n).enabled}
    if not engines:
        raise RuntimeError("no engine is enabled: enable engines.hf and/or engines.vllm")
    return engines


def create_app(
    settings: Settings,
    engines: Mapping[str, Engine] | None = None,
    *,
    reload_settings: Callable[[], Settings] | None = None,
    builder: EngineBuilder = build_engine,
    metrics: GatewayMetrics | None = None,
) -> FastAPI:
    """The app. ``reload_settings`` re-reads the configuration (the CLI passes "load the same file
    again"); without it SIGHUP is not handled and ``POST /admin/reload`` answers 409.
    ``builder`` builds engines a reload enables."""
    chosen = dict(engines) if engines is not None else None
    app_metrics = metrics or GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(app_metrics, builder=builder)
        await runtime.open(settings, chosen)
        monitor = Monitor(runtime)
        reloader = Reloader(runtime, reload_settings)
        app.state.runtime = runtime
        app.state.reloader = reloader
        app.state.monitor = monitor
        app.state.service = EmbeddingService(runtime, app_metrics)
        monitor.start()
        hup = _install_sighup(reloader) if reload_settings is not None else False
        try:
            yield
        finally:
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await monitor.stop()
            await reloader.aclose()
            await runtime.aclose()

    app = FastAPI(
        title="embed-gateway",
        version=__version__,
        description="OpenAI-compatible embeddings for jina-embeddings-v3, all five task adapters.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = app_metrics
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(admin_router)
    return app


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

"""How an engine of each kind is built, and which goes first in a route by default.

An engine is a named instance of a kind (``engines: {name: {kind: ..., ...}}`` under a model, or
the top-level ``engines.hf`` / ``engines.vllm`` of the jina-embeddings-v3 model). Its settings are
validated at load (:mod:`gateway.kinds`); here each kind's builder imports its package lazily, so a
gateway with only remote engines starts without torch. Adding a kind is one builder below and one
settings entry in :mod:`gateway.kinds`.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from gateway.catalog import build_catalog
from gateway.config import Settings
from gateway.contract import NULL_OBSERVER, Engine, EngineObserver
from gateway.kinds import engine_kind

__all__ = ["build_engine", "configured_engines", "engine_config"]


def _build_hf(name: str, s: Any, observer: EngineObserver) -> Engine:
    if s.ray.enabled:  # the HF engine as Ray Serve replicas (docs/scale-out.md)
        if importlib.util.find_spec("ray") is None:
            raise RuntimeError("engines.hf.ray is enabled but Ray is missing: pip install 'embed-gateway[ray]'")
        from engine_hf.ray import RayHFEngine

        return RayHFEngine(s, name=name, observer=observer)
    try:
        from engine_hf import HFEngine
    except ImportError as exc:  # torch/transformers are the [hf] extra
        raise RuntimeError(
            f"engine {name} (kind hf) is enabled but its dependencies are missing: pip install 'embed-gateway[hf]'"
        ) from exc
    return HFEngine(s, name=name, observer=observer)


def _build_vllm(name: str, s: Any, observer: EngineObserver) -> Engine:
    from engine_vllm import VLLMEngine

    return VLLMEngine(s, name=name, observer=observer)


def _package_builder(package: str, extra: str | None) -> Callable[[str, Any, EngineObserver], Engine]:
    """The builder of a kind whose package has ``build(settings, *, name, observer)``; ``extra``:
    the install extra its dependencies come with (torch and transformers are ``hf``)."""

    def build(name: str, s: Any, observer: EngineObserver) -> Engine:
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            hint = f": pip install 'embed-gateway[{extra}]'" if extra else ""
            raise RuntimeError(f"engine {name} ({package}) cannot be loaded: {exc}{hint}") from exc
        engine: Engine = module.build(s, name=name, observer=observer)
        return engine

    return build


#: kind -> builder (a default route's order is the routing policy's: gateway.pool.routing)
_BUILDERS: dict[str, Callable[[str, Any, EngineObserver], Engine]] = {
    "vllm": _build_vllm,
    "hf": _build_hf,
    "sentence-transformers": _package_builder("engine_hf.st", "hf"),
    "bge-m3": _package_builder("engine_hf.bge_m3", "hf"),
    "openai": _package_builder("engine_vllm.openai", None),
}


def configured_engines(settings: Settings) -> dict[str, BaseModel]:
    """Every enabled engine of every model, by name, with its settings."""
    return build_catalog(settings).engines


def build_engine(name: str, settings: Settings, observer: EngineObserver = NULL_OBSERVER) -> Engine:
    """The engine called ``name`` from its settings, not started; it reports its batches and queue
    to ``observer`` (the app's metrics)."""
    engines = configured_engines(settings)
    if name not in engines:
        legacy = type(settings.engines).model_fields
        if name in legacy:  # a known top-level engine that is switched off: built on request (tools, tests)
            s: BaseModel = getattr(settings.engines, name)
        else:
            raise ValueError(f"unknown engine {name!r}")
    else:
        s = engines[name]
    kind = engine_kind(s)
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise ValueError(f"engine {name!r}: no builder for kind {kind!r}")
    return builder(name, s, observer)


def engine_config(settings: Settings, name: str) -> str | None:
    """The engine's settings as canonical JSON with its kind (immutable, comparable across reloads);
    None for a name the settings do not know (an engine injected under another name) or a disabled one."""
    s = configured_engines(settings).get(name)
    if s is None:
        return None
    return json.dumps({"kind": engine_kind(s), **s.model_dump(mode="json")}, sort_keys=True)

"""The engines the gateway knows by name: how each is built, and which goes first by default.

Why one module: an engine's name is a configuration fact (its ``engines.<name>`` section), a
routing fact (the built-in route order) and a building fact (which package implements it). Written
once here, the router, the app and the pool cannot disagree; adding an engine is one entry below
plus its settings section.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable

from gateway.config import EnginesSettings, Settings
from gateway.contract import NULL_OBSERVER, Engine, EngineObserver

__all__ = ["PREFERENCE", "build_engine", "configurable_engines", "engine_config", "is_enabled"]


def _build_hf(settings: Settings, observer: EngineObserver) -> Engine:
    if settings.engines.hf.ray.enabled:  # the HF engine as Ray Serve replicas (docs/scale-out.md)
        if importlib.util.find_spec("ray") is None:
            raise RuntimeError("engines.hf.ray is enabled but Ray is missing: pip install 'embed-gateway[ray]'")
        from engine_hf.ray import RayHFEngine

        return RayHFEngine(settings.engines.hf, observer=observer)
    try:
        from engine_hf import HFEngine
    except ImportError as exc:  # torch/transformers are the [hf] extra
        raise RuntimeError(
            "engines.hf is enabled but its dependencies are missing: pip install 'embed-gateway[hf]'"
        ) from exc
    return HFEngine(settings.engines.hf, observer=observer)


def _build_vllm(settings: Settings, observer: EngineObserver) -> Engine:
    from engine_vllm import VLLMEngine

    return VLLMEngine(settings.engines.vllm, observer=observer)


#: name -> builder, in the built-in route order: vLLM first where it can serve (it merges only the
#: text-matching adapter, so its capabilities keep it out of every other task), then the exact
#: in-process engine; engines not listed follow in registration order
_BUILDERS: dict[str, Callable[[Settings, EngineObserver], Engine]] = {"vllm": _build_vllm, "hf": _build_hf}
PREFERENCE: tuple[str, ...] = tuple(_BUILDERS)


def build_engine(name: str, settings: Settings, observer: EngineObserver = NULL_OBSERVER) -> Engine:
    """The engine called ``name`` from its ``engines.<name>`` section, not started; it reports its
    batches and queue to ``observer`` (the app's metrics)."""
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ValueError(f"unknown engine {name!r}")
    return builder(settings, observer)


def configurable_engines() -> tuple[str, ...]:
    """Engine names that have a section under ``engines:`` (and so an ``enabled`` switch)."""
    return tuple(EnginesSettings.model_fields)


def engine_config(settings: Settings, name: str) -> str | None:
    """The ``engines.<name>`` section as canonical JSON (immutable, comparable across reloads);
    None for a name the settings do not know (an engine injected under another name)."""
    if name not in EnginesSettings.model_fields:
        return None
    return json.dumps(getattr(settings.engines, name).model_dump(mode="json"), sort_keys=True)


def is_enabled(settings: Settings, name: str) -> bool:
    return bool(getattr(settings.engines, name).enabled)

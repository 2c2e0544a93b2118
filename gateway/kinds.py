"""Engine kinds: what ``kind:`` in an engine's configuration may say, and the settings each takes.

Why its own module: an engine's settings are validated when the configuration loads (a typo fails
start-up with the key's path), and that must not import an engine, only its pydantic settings.
How each kind is built lives in :mod:`gateway.engines`; adding a kind is one line in each.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from engine_hf.bge_m3.settings import BGEM3Settings
from engine_hf.settings import HFEngineSettings
from engine_hf.st.settings import SentenceTransformersSettings
from engine_vllm.settings import OpenAIUpstreamSettings, VLLMEngineSettings

__all__ = ["KIND_SETTINGS", "engine_kind", "parse_engine"]

#: kind -> the settings model of an engine of that kind. ``hf`` is jina-embeddings-v3 in process
#: (all five adapters); ``vllm`` a vLLM server; ``sentence-transformers`` any checkpoint in that
#: format, in process; ``bge-m3`` BGE-M3 in process (dense, sparse, multi-vector); ``openai`` any
#: OpenAI-compatible embeddings upstream.
KIND_SETTINGS: dict[str, type[BaseModel]] = {
    "hf": HFEngineSettings,
    "vllm": VLLMEngineSettings,
    "sentence-transformers": SentenceTransformersSettings,
    "bge-m3": BGEM3Settings,
    "openai": OpenAIUpstreamSettings,
}


def parse_engine(name: str, raw: Any) -> BaseModel:
    """An engine entry of a model (``{kind: ..., ...}``) as its kind's settings; ``ValueError``
    naming the entry and the known kinds otherwise."""
    if isinstance(raw, BaseModel):
        return raw
    if not isinstance(raw, dict):
        raise ValueError(f"engine {name!r}: expected a mapping with a 'kind', got {type(raw).__name__}")
    data = dict(raw)
    kind = data.pop("kind", None)
    cls = KIND_SETTINGS.get(str(kind)) if kind is not None else None
    if cls is None:
        known = ", ".join(sorted(KIND_SETTINGS))
        raise ValueError(f"engine {name!r}: unknown kind {kind!r}; known kinds: {known}")
    if "kind" in cls.model_fields:
        data["kind"] = kind
    return cls.model_validate(data)


def engine_kind(settings: BaseModel) -> str:
    """The kind of an engine's settings object (the inverse of :data:`KIND_SETTINGS`)."""
    for kind, cls in KIND_SETTINGS.items():
        if type(settings) is cls:
            return kind
    raise ValueError(f"no kind has settings of type {type(settings).__name__}")

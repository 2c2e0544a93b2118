"""The ``bge-m3`` in-process engine kind: BAAI/bge-m3's dense, sparse and multi-vector outputs.

Loads the published layout (XLM-RoBERTa encoder, ``sparse_linear.pt``, ``colbert_linear.pt``,
tokenizer files) without executing checkpoint code, and computes what FlagEmbedding's
``BGEM3FlagModel.encode`` computes (docs/models.md). Importing this package costs nothing: torch
and transformers load when an engine is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.contract import NULL_OBSERVER, Engine, EngineObserver

__all__ = ["KIND", "BGEM3Engine", "BGEM3Settings", "build"]

#: the ``kind`` of this engine's settings
KIND = "bge-m3"

if TYPE_CHECKING:
    from engine_hf.bge_m3.engine import BGEM3Engine
    from engine_hf.bge_m3.settings import BGEM3Settings


def build(settings: BGEM3Settings, *, name: str, observer: EngineObserver = NULL_OBSERVER) -> Engine:
    """The engine for one ``kind: bge-m3`` entry of the gateway's configuration, not started."""
    from engine_hf.bge_m3.engine import BGEM3Engine

    return BGEM3Engine(settings, name=name, observer=observer)


def __getattr__(name: str) -> Any:
    if name == "BGEM3Engine":
        from engine_hf.bge_m3.engine import BGEM3Engine

        return BGEM3Engine
    if name == "BGEM3Settings":
        from engine_hf.bge_m3.settings import BGEM3Settings

        return BGEM3Settings
    raise AttributeError(name)

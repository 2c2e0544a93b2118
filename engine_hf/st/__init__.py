"""The ``sentence-transformers`` in-process kind: any checkpoint in sentence-transformers' format.

``modules.json`` pipelines of Transformer -> Pooling -> optional Dense -> optional Normalize are
served as ``SentenceTransformer(model).encode(texts, prompt_name=task)`` computes them, without
sentence-transformers at run time and without executing checkpoint code. Importing this package
costs no torch: the engine module loads only when :func:`build` (or the engine class) is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine_hf.st.settings import SentenceTransformersSettings
from gateway.contract import NULL_OBSERVER, Engine, EngineObserver

__all__ = ["SentenceTransformersEngine", "SentenceTransformersSettings", "build"]

if TYPE_CHECKING:
    from engine_hf.st.engine import SentenceTransformersEngine


def build(settings: SentenceTransformersSettings, *, name: str, observer: EngineObserver = NULL_OBSERVER) -> Engine:
    """The engine for one ``engines.<name>`` section of kind ``sentence-transformers``, not started."""
    from engine_hf.st.engine import SentenceTransformersEngine

    return SentenceTransformersEngine(settings, name=name, observer=observer)


def __getattr__(name: str) -> Any:
    if name == "SentenceTransformersEngine":
        from engine_hf.st.engine import SentenceTransformersEngine

        return SentenceTransformersEngine
    raise AttributeError(name)

"""Engine that serves text-matching through a vLLM OpenAI-compatible server (see docs/engines.md).

vLLM merges only jina-embeddings-v3's text-matching adapter at load, so this engine declares that
task alone. It needs only httpx: a gateway that fronts vLLM installs without torch. Import cost is
paid lazily (``gateway.config`` imports :mod:`engine_vllm.settings` without the engine's HTTP stack).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["VLLMEngine"]

if TYPE_CHECKING:
    from engine_vllm.engine import VLLMEngine


def __getattr__(name: str) -> Any:
    if name == "VLLMEngine":
        from engine_vllm.engine import VLLMEngine

        return VLLMEngine
    raise AttributeError(name)

"""The HTTP upstream engines (see docs/engines.md): ``VLLMEngine`` (jina-embeddings-v3's
text-matching on a vLLM server) and ``OpenAIEngine`` (the ``openai`` kind: any OpenAI-compatible
embeddings server).

They need only httpx: a gateway that fronts remote servers installs without torch. Import cost is
paid lazily (``gateway.config`` imports :mod:`engine_vllm.settings` without the engines' HTTP stack).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["OpenAIEngine", "VLLMEngine"]

if TYPE_CHECKING:
    from engine_vllm.engine import VLLMEngine
    from engine_vllm.openai import OpenAIEngine


def __getattr__(name: str) -> Any:
    if name == "VLLMEngine":
        from engine_vllm.engine import VLLMEngine

        return VLLMEngine
    if name == "OpenAIEngine":
        from engine_vllm.openai import OpenAIEngine

        return OpenAIEngine
    raise AttributeError(name)

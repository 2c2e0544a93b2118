"""In-process engine: jina-embeddings-v3 on transformers' native ``JinaEmbeddingsV3Model``.

Runs all five task adapters exactly as the reference ``encode()`` does, without executing any hub
code. Import cost is paid lazily: ``HFEngine`` pulls in torch only when constructed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["HFEngine"]

if TYPE_CHECKING:
    from engine_hf.engine import HFEngine


def __getattr__(name: str) -> Any:
    if name == "HFEngine":
        from engine_hf.engine import HFEngine

        return HFEngine
    raise AttributeError(name)

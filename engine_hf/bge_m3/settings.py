"""Settings of the ``bge-m3`` in-process engine kind (BAAI/bge-m3: dense, sparse and multi-vector).

Pydantic only: the gateway composes this model into its configuration; the engine knows nothing
else of it. Everything but ``kind`` and the default ``model`` is shared by every in-process kind
(:class:`engine_hf.settings.InProcessSettings`).
"""

from __future__ import annotations

from typing import Literal

from engine_hf.settings import InProcessSettings

__all__ = ["BGEM3Settings"]


class BGEM3Settings(InProcessSettings):
    """One BGE-M3 engine: the XLM-RoBERTa encoder and its two heads (``sparse_linear.pt``,
    ``colbert_linear.pt``), from a hub id or a local directory in the published layout."""

    kind: Literal["bge-m3"] = "bge-m3"
    #: hub id or local directory in the published layout
    model: str = "BAAI/bge-m3"
    #: packed: a pass's sequences in one row, attention within each, no padding (on a CPU the
    #: linear layers then run on the real tokens only: measured 1.3x a padded pass of short texts);
    #: padded: pad to the longest and mask (one fused kernel per layer on GPUs); auto: packed on
    #: CPU, padded on CUDA
    attention: Literal["auto", "packed", "padded"] = "auto"

"""The in-process engine's settings (``engines.hf`` of the gateway's configuration).

Pydantic only: the engine is configured by this model and knows nothing else of the gateway's
configuration; ``gateway.config`` composes it. Every key is documented in docs/configuration.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["HFEngineSettings"]


class HFEngineSettings(BaseModel):
    """Where the model comes from, the device it runs on, and the engine's batching and input limits."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: hub id or local directory, either published layout
    model: str = "jinaai/jina-embeddings-v3"
    revision: str | None = None
    cache_dir: str | None = None
    #: never touch the network for the model (same as HF_HUB_OFFLINE=1 for this engine)
    local_files_only: bool = False
    device: str = "auto"
    #: auto: bfloat16 on CUDA (float16 without native bf16), float32 (exact) on CPU. int8 (CPU only,
    #: opt-in, lossy): int8 linear layers, the rest float32; its vectors say ``hf:int8`` (docs/engines.md)
    dtype: Literal["auto", "float32", "float16", "bfloat16", "int8"] = "auto"
    #: what runs the linear layers on a CPU: onednn (prepacked oneDNN weights), torch (F.linear: MKL
    #: in fp32), or auto (onednn for fp32 on non-Intel AVX-512 CPUs, else torch). Exact either way.
    cpu_kernels: Literal["auto", "onednn", "torch"] = "auto"
    #: torch intra-op threads on CPU; null = torch's default (all cores)
    threads: int | None = Field(None, ge=1)
    #: rowwise: base weights + per-row LoRA (mixed-task batches, least memory);
    #: merged: also keep a pre-merged copy of every adapted weight per task (fastest single-task batches)
    adapter_mode: Literal["rowwise", "merged"] = "rowwise"
    #: packed: a batch's sequences in one row, attention per sequence, no padding (best on CPU);
    #: padded: pad to the longest and mask (best for GPU kernels); auto: packed on CPU, padded on CUDA
    attention: Literal["auto", "packed", "padded"] = "auto"
    #: torch.compile the model: off | default | reduce-overhead (CUDA graphs) | max-autotune.
    #: Pays a compile on start-up and on new shapes; meant for GPUs with padded attention.
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = "off"
    #: tokens per forward pass (real tokens when packed, padded size when padded);
    #: null = the device's best: 1024 on CPU (bigger passes are slower per token there), 16384 on CUDA
    max_batch_tokens: int | None = Field(None, ge=16)
    max_batch_requests: int = Field(64, ge=1)
    #: admission bound: tokens waiting in the queue before new work is refused (429)
    max_queued_tokens: int = Field(262144, ge=16)
    max_input_tokens: int = Field(8192, ge=8)
    #: late chunking: tokens per forward pass for documents longer than one pass; null = max_input_tokens
    late_chunking_window_tokens: int | None = Field(None, ge=8)
    #: late chunking: tokens of left context each window after the first re-reads (their outputs
    #: are dropped); null = window // 16 (512 for the default 8192-token window)
    late_chunking_overlap_tokens: int | None = Field(None, ge=0)
    #: late chunking: most tokens one document (instruction and special tokens included) may have
    max_late_chunking_tokens: int = Field(65536, ge=8)

    @model_validator(mode="after")
    def _check_windows(self) -> HFEngineSettings:
        window, overlap = self.late_chunking_windows()
        if window > self.max_input_tokens:
            raise ValueError(
                f"late_chunking_window_tokens ({window}) exceeds max_input_tokens ({self.max_input_tokens})"
            )
        if overlap * 2 > window:
            raise ValueError(
                f"late_chunking_overlap_tokens ({overlap}) must be at most half the window ({window} tokens)"
            )
        return self

    def late_chunking_windows(self) -> tuple[int, int]:
        """``(window, overlap)`` in tokens, defaults resolved."""
        window = self.late_chunking_window_tokens or self.max_input_tokens
        overlap = self.late_chunking_overlap_tokens
        return window, window // 16 if overlap is None else overlap

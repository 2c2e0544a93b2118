"""The in-process engine's settings (``engines.hf`` of the gateway's configuration).

Pydantic only: the engine is configured by this model and knows nothing else of the gateway's
configuration; ``gateway.config`` composes it. Every key is documented in docs/configuration.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["HFEngineSettings", "InProcessSettings", "RayAutoscalingSettings", "RaySettings"]


class RayAutoscalingSettings(BaseModel):
    """Ray Serve's autoscaling of the replicas (``engines.hf.ray.autoscaling``; docs/scale-out.md).

    Serve adds a replica when the average requests in flight per replica stay above
    ``target_ongoing_requests`` for ``upscale_delay_s``, and removes one when they stay below for
    ``downscale_delay_s``."""

    model_config = ConfigDict(extra="forbid")

    #: off: a fixed ``num_replicas``; on: between ``min_replicas`` and ``max_replicas``
    enabled: bool = False
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(2, ge=1)
    #: requests in flight per replica Serve aims at (each request is one gateway job of many inputs)
    target_ongoing_requests: float = Field(2.0, gt=0)
    upscale_delay_s: float = Field(30.0, ge=0)
    downscale_delay_s: float = Field(600.0, ge=0)
    #: how often replicas report their load, and over how long Serve averages it
    metrics_interval_s: float = Field(10.0, gt=0)
    look_back_period_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> RayAutoscalingSettings:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})")
        return self


class RaySettings(BaseModel):
    """The HF engine as a Ray Serve deployment (``engines.hf.ray``; docs/scale-out.md).

    Off by default: the engine runs in the gateway's process. On, the gateway calls N replicas of
    the same engine (each with its own token-budget batching) through a Serve handle."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    #: the cluster to join (``ray://host:10001`` or ``host:6379``); null = ``$RAY_ADDRESS``, else a
    #: local cluster started in this process (and stopped with it)
    address: str | None = None
    #: the Serve application and deployment names (one app per gateway fleet)
    app_name: str = "embed-gateway-hf"
    deployment_name: str = "HFEngine"
    #: deploy the app on start (and delete it on close); false = call an app that already runs,
    #: put up by ``serve deploy configs/ray-serve.yaml`` or a KubeRay RayService
    deploy: bool = True
    #: replicas when autoscaling is off
    num_replicas: int = Field(1, ge=1)
    autoscaling: RayAutoscalingSettings = RayAutoscalingSettings()
    #: Ray resources each replica reserves: one GPU each on GPU hosts, CPUs on CPU hosts
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    #: torch threads in each replica (CPU); null = engines.hf.threads
    threads: int | None = Field(None, ge=1)
    #: requests one replica takes at a time; beyond it they wait in the handle's queue
    max_ongoing_requests: int = Field(16, ge=1)
    #: requests waiting in the handle's queue before new ones are refused (429); -1 = unbounded
    max_queued_requests: int = Field(-1, ge=-1)
    #: retries of a job whose replica died under it (the job is idempotent)
    max_retries: int = Field(3, ge=0)
    #: seconds the deployment may take to become ready on start
    start_timeout_s: float = Field(300.0, gt=0)


class InProcessSettings(BaseModel):
    """What every in-process kind (jina-v3, sentence-transformers, BGE-M3) takes: where the weights
    come from, the device and precision, and the shared batching kit's limits. No kind executes
    code from a checkpoint."""

    model_config = ConfigDict(extra="forbid")

    #: hub id or local directory
    model: str
    revision: str | None = None
    cache_dir: str | None = None
    #: never touch the network for the model (same as HF_HUB_OFFLINE=1 for this engine)
    local_files_only: bool = False
    device: str = "auto"
    #: auto: bfloat16 on CUDA (float16 without native bf16), float32 (exact) on CPU. int8 (CPU only,
    #: opt-in, lossy): int8 linear layers, the rest float32; its vectors say ``<engine>:int8`` (docs/engines.md)
    dtype: Literal["auto", "float32", "float16", "bfloat16", "int8"] = "auto"
    #: what runs the linear layers on a CPU: onednn (prepacked oneDNN weights), torch (F.linear: MKL
    #: in fp32), or auto (onednn for fp32 on non-Intel AVX-512 CPUs, else torch). Exact either way.
    cpu_kernels: Literal["auto", "onednn", "torch"] = "auto"
    #: torch intra-op threads on CPU; null = torch's default (all cores)
    threads: int | None = Field(None, ge=1)
    #: tokens per forward pass (real tokens when packed, padded size when padded);
    #: null = the device's best: 1024 on CPU (bigger passes are slower per token there), 16384 on CUDA
    max_batch_tokens: int | None = Field(None, ge=16)
    max_batch_requests: int = Field(64, ge=1)
    #: the longest a free engine holds its next pass, right after a pass, for the requests of the
    #: clients it just answered (and never over a tenth of that pass): N clients in a loop then fill
    #: one pass instead of two half ones; 0 = never hold. A lone client's request is never held
    batch_gather_ms: float = Field(200.0, ge=0, le=1000)
    #: admission bound: tokens waiting in the queue before new work is refused (429)
    max_queued_tokens: int = Field(262144, ge=16)
    max_input_tokens: int = Field(8192, ge=8)
    #: run the forward passes in a process of their own, which alone holds the weights (the gateway's
    #: process keeps HTTP, JSON, routing, the cache, tokenising and batching): the passes no longer
    #: wait on the gateway's Python. false = on a worker thread of the gateway's process (docs/engines.md)
    own_process: bool = True


class HFEngineSettings(InProcessSettings):
    """Where the model comes from, the device it runs on, and the engine's batching and input limits."""

    enabled: bool = True
    #: hub id or local directory, either published layout
    model: str = "jinaai/jina-embeddings-v3"
    #: rowwise: base weights + per-row LoRA (mixed-task batches, least memory);
    #: merged: also keep a pre-merged copy of every adapted weight per task (fastest single-task batches)
    adapter_mode: Literal["rowwise", "merged"] = "rowwise"
    #: packed: a batch's sequences in one row, attention per sequence, no padding (best on CPU);
    #: padded: pad to the longest and mask (best for GPU kernels); auto: packed on CPU, padded on CUDA
    attention: Literal["auto", "packed", "padded"] = "auto"
    #: torch.compile the model: off | default | reduce-overhead (CUDA graphs) | max-autotune.
    #: Pays a compile on start-up and on new shapes; meant for GPUs with padded attention.
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = "off"
    #: late chunking: tokens per forward pass for documents longer than one pass; null = max_input_tokens
    late_chunking_window_tokens: int | None = Field(None, ge=8)
    #: late chunking: tokens of left context each window after the first re-reads (their outputs
    #: are dropped); null = window // 16 (512 for the default 8192-token window)
    late_chunking_overlap_tokens: int | None = Field(None, ge=0)
    #: late chunking: most tokens one document (instruction and special tokens included) may have
    max_late_chunking_tokens: int = Field(65536, ge=8)
    #: run the engine as Ray Serve replicas instead of in this process (docs/scale-out.md)
    ray: RaySettings = RaySettings()

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

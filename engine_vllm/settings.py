"""The vLLM engine's settings (``engines.vllm`` of the gateway's configuration).

Pydantic only: the engine is configured by these models and knows nothing else of the gateway's
configuration; ``gateway.config`` composes them. Every key is documented in docs/configuration.md.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["ManagedVLLMSettings", "VLLMEngineSettings"]


class ManagedVLLMSettings(BaseModel):
    """The gateway runs vLLM itself: start, wait for health, restart with backoff, stop on shutdown."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    #: argv of the vLLM server; it must listen where ``engines.vllm.url`` points
    command: list[str] = Field(default_factory=list)
    #: extra environment for the process (on top of the gateway's own)
    env: dict[str, str] = Field(default_factory=dict)
    #: append the process's output here; null = the gateway's own stdout/stderr
    log_file: str | None = None
    #: how long one start may take before the process is killed and started again
    startup_timeout: float = Field(600.0, gt=0)
    #: restart delays grow from ``restart_initial_delay`` by x2 per consecutive failure up to ``restart_max_delay``
    restart_initial_delay: float = Field(1.0, ge=0)
    restart_max_delay: float = Field(60.0, ge=0)
    #: SIGTERM, then SIGKILL after this many seconds
    stop_timeout: float = Field(20.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ManagedVLLMSettings:
        if self.enabled and not self.command:
            raise ValueError("engines.vllm.managed.enabled needs engines.vllm.managed.command (the vLLM argv)")
        return self


class VLLMEngineSettings(BaseModel):
    """A vLLM OpenAI-compatible server that serves text-matching (its merged adapter) fast."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    #: base URL of the vLLM server (without /v1)
    url: str = "http://127.0.0.1:8000"
    #: the model name vLLM serves (its --served-model-name / --model); null = ask GET /v1/models
    model: str | None = None
    #: vLLM's --api-key, if it was started with one
    api_key: SecretStr | None = None
    connect_timeout: float = Field(2.0, gt=0)
    #: per HTTP call to vLLM (an embedding request of a full batch included)
    read_timeout: float = Field(120.0, gt=0)
    #: timeout of a GET /health probe
    health_timeout: float = Field(5.0, gt=0)
    #: pooled connections to vLLM (requests and token counting share them)
    max_connections: int = Field(64, ge=1)
    #: per input, <s>, </s> included; the same limit as engines.hf (vLLM's --max-model-len must be >= this)
    max_input_tokens: int = Field(8192, ge=8)
    #: admission bound: inputs sent to vLLM and not answered yet before new work is refused
    #: (the router tries another engine, then 429 with Retry-After)
    max_queued_inputs: int = Field(4096, ge=1)
    #: what the server computes with, for the embedding cache's key: any string that changes whenever
    #: its checkpoint, revision, dtype or quantization does (e.g. "jina-v3@f1944de/bf16"). Null: a
    #: managed server is described by its command line; an external one's vectors are not cached
    #: (the gateway cannot see what it runs). See docs/cache.md.
    cache_identity: str | None = None
    managed: ManagedVLLMSettings = ManagedVLLMSettings()

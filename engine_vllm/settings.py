"""The HTTP engines' settings: ``VLLMEngineSettings`` (a vLLM server for jina-embeddings-v3's
text-matching) and ``OpenAIUpstreamSettings`` (the ``openai`` kind: any OpenAI-compatible server).

Pydantic only: the engine is configured by these models and knows nothing else of the gateway's
configuration; ``gateway.config`` composes them. Every key is documented in docs/configuration.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["ManagedVLLMSettings", "OpenAIUpstreamSettings", "VLLMEngineSettings"]


class ManagedVLLMSettings(BaseModel):
    """The gateway runs vLLM itself: start, wait for health, restart with backoff, stop on shutdown."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    #: argv of the vLLM server; it must listen where the engine's ``url`` points
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
            raise ValueError("managed.enabled needs managed.command (the vLLM argv)")
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
    #: the tasks this server serves, each with the text put in front of every input for it (vLLM
    #: adds no prompt itself). Null: jina-embeddings-v3's text-matching, no prompt (the one adapter
    #: vLLM merges). A server of another model serves what its model's routes send it (jina-v5:
    #: one server per task).
    tasks: dict[str, str] | None = None
    #: the served model's tokenizer (a directory holding tokenizer.json, the file, or a hub name in
    #: the local cache): while vLLM is busy, requests are tokenized and counted here and sent as
    #: token ids, those that wait together (``max_calls``); with vLLM idle a request goes as text. Checked
    #: once against vLLM's /tokenize; on a mismatch it is not used. Null: a managed vLLM's
    #: --tokenizer / --model, else none (one call per request, vLLM counts). See docs/engines.md.
    tokenizer: str | None = None
    #: with a tokenizer: at most this many embedding calls to vLLM in flight; requests that arrive
    #: while all are busy go together in the next one (at idle a request goes alone, at once)
    max_calls: int = Field(2, ge=1)
    #: with a tokenizer: at most this many inputs in one call (a larger request still goes whole)
    max_call_inputs: int = Field(256, ge=1)
    #: with a tokenizer: requests share calls (``max_calls``) only if vLLM answers one short text, at
    #: discovery (best of three), faster than this; slower means long passes, where a shared call
    #: costs more than it saves, and every request goes on a call of its own. Null: always share
    share_below_ms: float | None = Field(25.0, gt=0)
    managed: ManagedVLLMSettings = ManagedVLLMSettings()


#: request fields the engine writes itself; ``extra_body`` may not replace them
_OWN_FIELDS = frozenset({"model", "input", "encoding_format"})


class OpenAIUpstreamSettings(BaseModel):
    """A remote embedding model behind an OpenAI-compatible API (vLLM, TEI's ``/v1``, Infinity,
    a hosted API). What the gateway cannot see of a remote model is declared here or discovered
    by one probe embedding at start."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["openai"] = "openai"
    #: base URL including the API version, e.g. ``https://api.example.com/v1`` or ``http://vllm:8000/v1``
    url: str
    #: the model name the upstream serves (the ``model`` field of each request)
    model: str = Field(min_length=1)
    #: NAME of the environment variable holding the API key (sent as ``Authorization: Bearer``);
    #: null = no key. Read at start; the key is never logged or shown.
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    connect_timeout: float = Field(5.0, gt=0)
    #: per HTTP call (one embeddings request of up to ``max_batch_inputs`` inputs)
    read_timeout: float = Field(60.0, gt=0)
    #: timeout of the ``GET {url}/models`` health probe
    health_timeout: float = Field(5.0, gt=0)
    #: pooled connections to the upstream
    max_connections: int = Field(32, ge=1)
    #: most inputs per upstream request; a larger job is split and sent concurrently (TEI's
    #: default ``--max-client-batch-size`` is 32, OpenAI's limit 2048)
    max_batch_inputs: int = Field(32, ge=1)
    #: admission bound: inputs sent and not answered yet before new work is refused as overloaded
    max_queued_inputs: int = Field(1024, ge=1)
    #: the upstream's per-input token limit, for GET /info; null = unknown (the upstream refuses
    #: over-long input itself, and that refusal reaches the client as a 400)
    max_input_tokens: int | None = Field(None, ge=1)
    #: ``base64`` (little-endian float32, the fastest to decode) or ``float`` (JSON numbers) for
    #: upstreams that do not support base64
    encoding_format: Literal["base64", "float"] = "base64"
    #: full output dimension; null = discovered from one probe embedding at start
    dimensions: int | None = Field(None, ge=1)
    #: whether the upstream returns unit-length vectors; null = discovered from the probe
    normalized: bool | None = None
    #: whether a prefix of the vector is a valid smaller embedding (Matryoshka training); without
    #: it a request for fewer ``dimensions`` is refused
    matryoshka: bool = False
    #: names the upstream's weights for the embedding cache (e.g. "text-embedding-3-small@2024-01");
    #: change it whenever the upstream's model changes. Null = never cached: a remote model can
    #: change under the gateway without it noticing.
    cache_identity: str | None = Field(None, min_length=1)
    #: the tasks this engine serves, each with the text put in front of every input for it (its
    #: prompt, "" for none); the key "none" is "no task". Empty: "no task" only, nothing prepended.
    tasks: dict[str, str] = Field(default_factory=dict)
    #: extra JSON fields sent with every embeddings request (e.g. vLLM's ``truncate_prompt_tokens``,
    #: Jina's ``task``); never ``model``, ``input`` or ``encoding_format``
    extra_body: dict[str, Any] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https:// and include the API version, e.g. https://api.example.com/v1")
        return v.rstrip("/")

    @field_validator("extra_body")
    @classmethod
    def _extra_body(cls, v: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(_OWN_FIELDS & v.keys())
        if clash:
            raise ValueError(f"extra_body may not set {', '.join(clash)} (the engine writes them)")
        return v

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: dict[str, str]) -> dict[str, str]:
        if any(not k for k in v):
            raise ValueError("tasks: a task name may not be empty (use \"none\" for no task)")
        return v

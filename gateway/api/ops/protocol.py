"""The operational API's wire views: ``GET /info``, ``GET /ready``, ``GET /admin/*``.

Why apart from the embedding dialects: these views describe the server (its engines, limits,
cache, readiness), not an embedding; every dialect's clients and the operator's tools read the
same ones. They are built from the internal types they show by :mod:`gateway.api.ops.info` and
:mod:`gateway.api.ops.views` (:func:`gateway.api.wire_view.wire_view`: shared fields by name).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel

__all__ = [
    "CacheFlushResponse",
    "CacheInfo",
    "CacheTierInfo",
    "CircuitView",
    "EngineInfo",
    "EngineStatus",
    "EnginesView",
    "Info",
    "LimitsInfo",
    "ModelInfo",
    "ParityResultView",
    "ParityView",
    "PlanError",
    "ReadyEngine",
    "ReadyResponse",
    "ReloadResponse",
    "AgreementView",
    "ShadowLaneView",
    "ShadowPairView",
    "ShadowView",
    "TeiEmbeddingModel",
    "TeiModelType",
]


def _six_places(x: float) -> float:
    return round(x, 6)


#: a similarity or deviation as the views show it: six decimal places
Rounded = Annotated[float, AfterValidator(_six_places)]

# ---------------------------------------------------------------------- /info and /admin/cache


class EngineInfo(BaseModel):
    """One engine as ``GET /info`` shows it (what it runs and its own limits)."""

    tasks: list[str]
    dimensions: int
    max_input_tokens: int
    late_chunking: bool
    model: str | None = None
    revision: str | None = None
    dtype: str | None = None
    device: str | None = None
    #: fp32-exact | bf16 | fp16 | int8: vectors of different numerics are not interchangeable
    numerics: str | None = None
    max_batch_tokens: int | None = None
    max_batch_requests: int | None = None
    max_queued_tokens: int | None = None
    max_queued_inputs: int | None = None
    #: dense, sparse, multivector
    outputs: list[str] = ["dense"]
    #: whether ``dimensions`` below the full width is allowed (Matryoshka-trained)
    matryoshka: bool = True
    #: bytes the loaded weights occupy (null for a remote engine)
    resident_bytes: int | None = None
    #: the model it serves
    served_model: str | None = None


class ModelInfo(BaseModel):
    """One model as ``GET /info`` lists it."""

    engines: list[str]
    #: its tasks (route key -> engines in order)
    routes: dict[str, list[str]]
    #: the engine its others are compared with (null: not compared)
    reference: str | None
    #: bytes of the weights its in-process engines hold
    resident_bytes: int
    #: task -> the vector space of its full-width normalised vectors
    spaces: dict[str, str] = {}


class LimitsInfo(BaseModel):
    max_inputs_per_request: int
    max_tokens_per_request: int | None
    max_input_tokens: int
    max_body_bytes: int
    max_concurrent_requests: int
    request_timeout: float | None


class CacheTierInfo(BaseModel):
    hits: int
    misses: int
    hit_rate: float | None


class CacheInfo(BaseModel):
    """The embedding cache's configuration and state (docs/cache.md)."""

    enabled: bool
    #: memory tier: its bound (0 = off), bytes and entries held, evictions
    memory_bytes: int
    memory_used_bytes: int
    memory_entries: int
    evictions: int
    #: shared tier: its URL (password hidden), entry TTL in seconds, whether its last call worked
    redis_url: str | None
    redis_up: bool | None
    redis_errors: int
    ttl: int | None
    lookups: int
    hit_rate: float | None
    coalesced: int
    tiers: dict[str, CacheTierInfo]


class CacheFlushResponse(BaseModel):
    status: Literal["flushed"] = "flushed"
    #: entries dropped from this process's memory tier, keys deleted on Redis
    memory: int
    redis: int


class TeiEmbeddingModel(BaseModel):
    pooling: str


class TeiModelType(BaseModel):
    embedding: TeiEmbeddingModel


class Info(BaseModel):
    """``GET /info``: TEI's keys (router/src/lib.rs ``Info``, so TEI tooling reads it) and the
    gateway's own: what this server runs and what it accepts."""

    # TEI's keys
    model_id: str
    model_sha: str | None
    model_dtype: str
    served_model_name: str
    model_type: TeiModelType
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int | None
    max_client_batch_size: int
    auto_truncate: bool
    tokenization_workers: int
    sha: str | None = None
    docker_label: str | None = None
    # TEI's and the gateway's: the gateway's version
    version: str
    # the gateway's own
    model: str | None
    revision: str | None
    dimensions: int
    dtype: str | None
    device: str | None
    engines: dict[str, EngineInfo]
    routes: dict[str, list[str]]
    limits: LimitsInfo
    #: every model served, with its engines, routes and memory (``GET /models/{model}/info``: one model in TEI's terms)
    models: dict[str, ModelInfo] | None = None
    api_keys_required: bool
    cache: CacheInfo | None = None


# ---------------------------------------------------------------------- /ready and /admin/engines


class CircuitView(BaseModel):
    state: Literal["closed", "open"]
    consecutive_failures: int
    times_opened: int
    open_for_s: float
    last_reason: str


class ParityResultView(BaseModel):
    ok: bool
    task: str | None
    mean_cosine: Rounded
    min_cosine: Rounded
    norm_deviation: Rounded
    detail: str
    #: wall-clock seconds (``time.time()``)
    checked_at: float


class ParityView(BaseModel):
    """The parity guard's view of one engine: its status and the last check per task."""

    status: Literal["not_required", "pending", "passed", "failed"]
    results: dict[str, ParityResultView]


class EngineStatus(BaseModel):
    """One engine as ``GET /admin/engines`` shows it: the recorded state (``ready``, ``reason``,
    ``detail``: what ``GET /ready`` says) and a live health check (``healthy``, ``health_detail``,
    ``info``), which is shown but changes nothing."""

    ready: bool
    #: why it is out (``start_failed``, ``parity_failed``, ``parity_pending``, ``circuit_open``,
    #: ``unhealthy``); null while it serves
    reason: str | None
    detail: str
    healthy: bool
    health_detail: str
    tasks: list[str]
    routes: list[str]
    circuit: CircuitView
    parity: ParityView
    in_flight: int
    #: what the engine reports about itself (present when it reports anything)
    info: dict[str, Any] | None = None


class ReadyEngine(BaseModel):
    """One engine in ``GET /ready``: able to serve now, or out and why."""

    ready: bool
    #: why it is out (``start_failed``, ``parity_failed``, ``parity_pending``, ``circuit_open``,
    #: ``unhealthy``); null while it serves
    reason: str | None
    detail: str
    circuit: Literal["closed", "open"]
    parity: ParityView


class ReadyResponse(BaseModel):
    """``GET /ready``: 200 ``ready`` or ``degraded``, 503 ``not ready`` or ``shutting down``. A caller
    without a valid key (when keys are configured) gets ``status`` only."""

    status: Literal["ready", "degraded", "not ready", "shutting down"]
    engines: dict[str, ReadyEngine] | None = None
    #: engines that cannot serve now
    not_ready: list[str] | None = None
    #: every task the configuration serves -> the engines able to serve it now, in route order
    tasks: dict[str, list[str]] | None = None
    #: tasks served, but not by the first engine of their route (their fast engine is out)
    fast_path_lost: list[str] | None = None
    #: tasks no engine can serve now (the reason for a 503 ``not ready``)
    unserved: list[str] | None = None
    #: per model: ``ready``, ``degraded`` or ``not ready`` (only with several models; the first
    #: model's tasks are keyed by their name, the others' as ``model/task``)
    models: dict[str, str] | None = None


class PlanError(BaseModel):
    error: str


class EnginesView(BaseModel):
    """``GET /admin/engines``: routes, what each task is served by right now, every engine live."""

    generation: int
    routes: dict[str, list[str]]
    serving_now: dict[str, list[str] | PlanError]
    engines: dict[str, EngineStatus]


class ReloadResponse(BaseModel):
    status: Literal["reloaded"] = "reloaded"
    generation: int
    routes: dict[str, list[str]]


class AgreementView(BaseModel):
    """Neighbourhood agreement of two models over a window of the same texts."""

    texts: int
    #: neighbours compared per text
    neighbours: int
    #: mean share of each text's nearest neighbours both models name (1.0 = the same)
    top_k_overlap: Rounded
    #: Spearman's rho of the two models' pairwise similarities (1.0 = the same order)
    rank_correlation: Rounded | None


class ShadowLaneView(BaseModel):
    """One task and vector width of a shadow pair (query and passage vectors are different neighbourhoods)."""

    task: str
    dimensions: int
    #: distinct recent texts in the window
    texts: int
    #: null until the window holds more texts than neighbours
    agreement: AgreementView | None


class ShadowPairView(BaseModel):
    """A primary model shadowed by a candidate: what was sampled, what the candidate cost, how far they agree."""

    primary: str
    candidate: str
    fraction: float
    sampled: int
    shadowed: int
    texts: int
    dropped: int
    failed: int
    queued: int
    candidate_tokens: int
    candidate_p50_ms: float | None
    candidate_p95_ms: float | None
    lanes: list[ShadowLaneView]


class ShadowView(BaseModel):
    """``GET /admin/shadow``: every live shadow A/B since start (or since a reload changed its settings)."""

    shadows: list[ShadowPairView]

"""The embeddings use case: resolve the alias, check limits, route, fall back, post-process.

Routes call :meth:`EmbeddingService.embed` with a validated spec and render what it returns;
all policy lives here, all wire concerns in :mod:`gateway.api`. A request holds one runtime
snapshot from start to end (a reload meanwhile does not move it), falls over to the next engine
of its plan at once on a retryable error, and retries (one tenacity policy) only on the last.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.api.schemas import EmbeddingSpec
from gateway.config import AliasSettings, Settings
from gateway.context import RequestContext, current_request
from gateway.contract import (
    EmbedGatewayError,
    EmbedJob,
    EmbedResult,
    EngineError,
    Engine,
    EngineTimeoutError,
    EngineUnavailableError,
    InvalidRequestError,
    ModelNotFoundError,
    RetryableError,
    Task,
    TokenIds,
)
from gateway.metrics import GatewayMetrics
from gateway.postprocess import finalize
from gateway.retry import retrying
from gateway.routing import route_key
from gateway.runtime import Runtime
from gateway.snapshot import EngineEntry, Snapshot

__all__ = ["EmbedOutcome", "EmbeddingService"]

log = logging.getLogger(__name__)

#: request texts in the request log (``server.log_request_texts``) are cut to this many characters
_LOGGED_TEXT_CHARS = 1000


@dataclass(frozen=True, slots=True)
class EmbedOutcome:
    vectors: npt.NDArray[np.float32]
    token_counts: tuple[int, ...]
    model: str
    task: Task | None
    engine: str
    queue_seconds: float
    inference_seconds: float
    fallbacks: int
    #: chunking jobs: each chunk's ``[start, end)`` character range in the document
    spans: tuple[tuple[int, int], ...] | None = None
    #: token-embedding jobs: each input's raw per-token states ``[n_i, d]`` (no truncation, no normalisation)
    token_states: tuple[npt.NDArray[np.float32], ...] | None = None


class EmbeddingService:
    """Resolves aliases and limits, then walks the routing plan of the snapshot it started with."""

    def __init__(self, runtime: Runtime, metrics: GatewayMetrics) -> None:
        self.runtime = runtime
        self.metrics = metrics

    @property
    def settings(self) -> Settings:
        return self.runtime.current.settings

    @property
    def engines(self) -> dict[str, Engine]:
        return {n: e.engine for n, e in self.runtime.current.entries.items()}

    def alias(self, model: str | None, settings: Settings | None = None) -> tuple[str, AliasSettings]:
        settings = settings or self.settings
        name = model or settings.api.default_model
        alias = settings.aliases.get(name)
        if alias is None:
            known = ", ".join(sorted(settings.aliases))
            raise ModelNotFoundError(f"the model {name!r} does not exist; available: {known}", param="model")
        return name, alias

    async def embed(self, spec: EmbeddingSpec, *, request_id: str = "", deadline: float | None = None) -> EmbedOutcome:
        """Serve one request. ``deadline`` (``time.monotonic()``) defaults to now +
        ``limits.request_timeout``; past it the request is a 504 and its queued work is dropped
        (the engine call is cancelled, which withdraws it from the engine's queue)."""
        ctx = current_request.get() or RequestContext(request_id)
        with self.runtime.acquire() as snap:
            timeout = snap.settings.limits.request_timeout
            if deadline is None and timeout is not None:
                deadline = time.monotonic() + timeout
            if deadline is None:
                return await self._embed(snap, spec, ctx, request_id=request_id, deadline=None)
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout_at(loop.time() + (deadline - time.monotonic())):
                    return await self._embed(snap, spec, ctx, request_id=request_id, deadline=deadline)
            except TimeoutError:
                limit = f" (limits.request_timeout = {timeout:g} s)" if timeout is not None else ""
                err = EngineTimeoutError(
                    f"the request did not finish within its deadline{limit}; its queued work was dropped",
                    engine=ctx.engine or None,
                )
                entry = snap.entries.get(ctx.engine)
                if entry is not None:  # a wedged engine times out every request: let its breaker see it
                    self.runtime.record_failure(entry, err)
                raise err from None

    async def _embed(
        self, snap: Snapshot, spec: EmbeddingSpec, ctx: RequestContext, *, request_id: str, deadline: float | None
    ) -> EmbedOutcome:
        settings = snap.settings
        name, alias = self.alias(spec.model, settings)
        task = spec.task if spec.task_given else alias.task
        dimensions = spec.dimensions if spec.dimensions is not None else alias.dimensions
        key = route_key(task)
        ctx.model, ctx.task, ctx.inputs = name, key, len(spec.inputs)
        if settings.server.log_request_texts:
            ctx.texts = [_loggable(x) for x in spec.inputs]
        limits = settings.limits
        if len(spec.inputs) > limits.max_inputs_per_request:
            raise InvalidRequestError(
                f"input has {len(spec.inputs)} items, more than limits.max_inputs_per_request = "
                f"{limits.max_inputs_per_request}; split the request",
                param="input",
                code="too_many_inputs",
            )
        if spec.has_token_ids and settings.api.token_ids == "reject":
            raise InvalidRequestError(
                "token-id input is disabled on this server: ids from another tokenizer (e.g. OpenAI's tiktoken) "
                "would embed as garbage. Send the text itself (in LangChain: check_embedding_ctx_length=False; "
                "see docs/api.md), or ask the operator to set api.token_ids: accept if your ids are XLM-R ids.",
                param="input",
                code="token_ids_not_accepted",
            )
        order = snap.plan(
            task, token_ids=spec.has_token_ids, late_chunking=spec.late_chunking, token_embeddings=spec.token_embeddings
        )
        caps = snap.capabilities()
        dims = max(caps[n].dimensions for n in order)
        if dimensions is not None and dimensions > dims:
            raise InvalidRequestError(f"dimensions must be between 1 and {dims}", param="dimensions")

        job = EmbedJob(
            inputs=spec.inputs,
            task=task,
            truncate=spec.truncate,
            late_chunking=spec.late_chunking,
            chunking=spec.chunking,
            request_id=request_id,
            deadline=deadline,
            max_total_tokens=limits.max_tokens_per_request,
            truncation_direction=spec.truncation_direction,
            token_embeddings=spec.token_embeddings,
        )
        for attempt, engine_name in enumerate(order):
            entry = snap.entries[engine_name]
            last = attempt + 1 == len(order)
            started = time.perf_counter()
            ctx.engine, ctx.fallbacks = engine_name, attempt
            try:
                result = await (self._with_retries(entry, job, key, settings) if last else self._once(entry, job))
            except RetryableError as err:
                if last:
                    raise
                self.metrics.fallbacks.labels(task=key, engine=engine_name, reason=err.code).inc()
                log.warning("engine %s failed (%s); falling back to %s", engine_name, err.message, order[attempt + 1])
                continue
            _check_shape(result, job)
            log.debug("engine %s served %d inputs in %.1f ms", engine_name, len(job.inputs),
                      1000 * (time.perf_counter() - started))
            ctx.engine, ctx.inputs, ctx.tokens = result.engine, len(result.vectors), sum(result.token_counts)
            ctx.queue_seconds, ctx.inference_seconds = result.queue_seconds, result.inference_seconds
            self.metrics.record_served(ctx)
            return EmbedOutcome(
                vectors=finalize(result.vectors, dimensions, spec.normalized),
                token_counts=result.token_counts,
                model=name,
                task=task,
                engine=result.engine,
                queue_seconds=result.queue_seconds,
                inference_seconds=result.inference_seconds,
                fallbacks=attempt,
                spans=result.spans,
                token_states=result.token_states,
            )
        raise EngineUnavailableError("no engine could serve the request")  # unreachable: plan() is never empty

    async def _once(self, entry: EngineEntry, job: EmbedJob) -> EmbedResult:
        """One attempt; its outcome feeds the engine's circuit breaker."""
        try:
            result = await entry.engine.embed(job)
        except RetryableError as err:
            self.runtime.record_failure(entry, err)
            raise
        entry.record_answered()
        return result

    async def _with_retries(self, entry: EngineEntry, job: EmbedJob, key: str, settings: Settings) -> EmbedResult:
        """The last engine a request can go to: retry retryable errors per the one policy."""

        def count(err: BaseException) -> None:
            code = err.code if isinstance(err, EmbedGatewayError) else type(err).__name__
            self.metrics.retries.labels(task=key, engine=entry.name, reason=code).inc()

        async for attempt in retrying(settings.retry, deadline=job.deadline, on_retry=count):
            with attempt:
                return await self._once(entry, job)
        raise AssertionError("unreachable: tenacity re-raises the last error")


def _loggable(item: str | TokenIds) -> str:
    text = item if isinstance(item, str) else " ".join(map(str, item))
    return text if len(text) <= _LOGGED_TEXT_CHARS else text[:_LOGGED_TEXT_CHARS] + "…"


def _check_shape(result: EmbedResult, job: EmbedJob) -> None:
    """One vector per input (per chunk for a chunking job, with its character range): an engine
    that breaks this is a bug, reported as such rather than as a confusing response."""
    if job.chunking is not None:
        ok = result.spans is not None and len(result.spans) == len(result.vectors) >= 1
    else:
        ok = len(result.vectors) == len(job.inputs)
    if job.token_embeddings:
        ok = ok and result.token_states is not None and len(result.token_states) == len(job.inputs)
    if not ok:
        raise EngineError(f"engine {result.engine} returned {len(result.vectors)} vectors for this job", engine=result.engine)

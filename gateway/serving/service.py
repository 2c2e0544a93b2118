"""The embeddings use case: resolve the alias, check limits, route, fall back, post-process.

Routes call :meth:`EmbeddingService.embed` with a validated spec and render what it returns;
all policy lives here, all wire concerns in :mod:`gateway.api`. A request runs on one snapshot
from start to end (the one its front door read and holds; a reload meanwhile does not move it),
falls over to the next engine of its plan at once on a retryable error, and retries (one tenacity
policy) only on the last. What it decided (alias, task, engine, timings, fallbacks) goes on the
request's :class:`~gateway.obs.context.RequestContext`, the one channel logs, metrics and response
headers read; the service returns only the vectors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.cache import CacheStore, Computed, KeyScope, serve_cached
from gateway.catalog import Resolved
from gateway.config import AliasSettings, Settings
from gateway.contract import (
    DENSE,
    EmbedGatewayError,
    EmbedJob,
    EmbedResult,
    EngineError,
    EngineTimeoutError,
    EngineUnavailableError,
    InvalidRequestError,
    RetryableError,
    SparseVector,
    TokenIds,
    route_key,
)
from gateway.errors import ModelNotFoundError, SpaceMismatchError
from gateway.obs.context import RequestContext, current_request
from gateway.obs.metrics import GatewayMetrics
from gateway.pool import Member, Pool, Snapshot
from gateway.serving.postprocess import finalize
from gateway.serving.retry import call_retrying
from gateway.serving.spec import EmbeddingSpec

__all__ = ["EmbedOutcome", "EmbeddingService", "ServedTap", "check_dimensions", "resolve_alias", "resolve_model"]

log = logging.getLogger(__name__)

#: request texts in the request log (``server.log_request_texts``) are cut to this many characters
_LOGGED_TEXT_CHARS = 1000


@dataclass(frozen=True, slots=True)
class EmbedOutcome:
    """What the response body needs; the request's other facts are on its context."""

    vectors: npt.NDArray[np.float32]
    token_counts: tuple[int, ...]
    #: the alias that served it
    model: str
    #: chunking jobs: each chunk's ``[start, end)`` character range in the document
    spans: tuple[tuple[int, int], ...] | None = None
    #: token-embedding jobs: each input's raw per-token states ``[n_i, d]`` (no truncation, no normalisation)
    token_states: tuple[npt.NDArray[np.float32], ...] | None = None
    #: requests for the sparse output: one per input
    sparse: tuple[SparseVector, ...] | None = None
    #: requests for multi-vectors: per input ``[n_i, d]`` rows as the engine returned them
    multivectors: tuple[npt.NDArray[np.float32], ...] | None = None
    #: the model that served it (its id)
    model_id: str = ""
    #: the vector space of its vectors (``x-embed-space``)
    space: str | None = None


#: told of every request served (the snapshot, what its name meant, its spec, its task, its outcome):
#: the live shadow A/B samples from here; it must neither raise nor wait
ServedTap = Callable[[Snapshot, Resolved, EmbeddingSpec, str | None, EmbedOutcome], None]


def resolve_model(snap: Snapshot, name: str | None) -> Resolved:
    """What ``name`` (an alias or a model id; the default when None) means, or
    ``ModelNotFoundError`` (404) listing every name a request may send."""
    assert snap.catalog is not None
    catalog = snap.catalog
    found = catalog.aliases.get(name or catalog.default)
    if found is None:
        known = ", ".join(sorted(catalog.aliases))
        raise ModelNotFoundError(f"the model {name!r} does not exist; available: {known}", param="model")
    return found


def resolve_alias(settings: Settings, model: str | None) -> tuple[str, AliasSettings]:
    """The top-level alias ``model`` names (the default one when None), or ``ModelNotFoundError`` (404)."""
    name = model or settings.api.default_model
    alias = settings.aliases.get(name)
    if alias is None:
        known = ", ".join(sorted(settings.aliases))
        raise ModelNotFoundError(f"the model {name!r} does not exist; available: {known}", param="model")
    return name, alias


def check_task(snap: Snapshot, model: str, task: str | None) -> None:
    """A task the model does not know is the client's error (400), named with the model's tasks."""
    keys = snap.model_routes(model)
    key = route_key(task)
    if key not in keys:
        valid = ", ".join(k for k, names in keys.items() if names) or "none"
        raise InvalidRequestError(
            f"unknown task {key!r} for model {model!r}; valid tasks: {valid}", param="task", code="unknown_task"
        )


def check_outputs(snap: Snapshot, model: str, order: list[str], outputs: frozenset[str]) -> list[str]:
    """The engines of ``order`` that compute every output asked for; a 400 naming what the model
    offers when none does."""
    able = [n for n in order if outputs <= snap.members[n].capabilities.outputs]
    if not able:
        offered = sorted({o for n in snap.engines_of(model) for o in snap.members[n].capabilities.outputs})
        missing = sorted(outputs - set(offered)) or sorted(outputs)
        raise InvalidRequestError(
            f"model {model!r} has no {' or '.join(missing)} output; it offers: {', '.join(offered)}",
            param="return_" + missing[0], code="output_not_supported",
        )
    return able


def check_dimensions(dimensions: int | None, width: int, *, matryoshka: bool = True, model: str = "") -> None:
    """The one Matryoshka limit: 1..``width`` (the widest engine that may serve the request); a
    model not trained for truncation takes only its full width."""
    if dimensions is not None and not 1 <= dimensions <= width:
        raise InvalidRequestError(f"dimensions must be between 1 and {width}; got {dimensions}", param="dimensions")
    if dimensions is not None and dimensions != width and not matryoshka:
        raise InvalidRequestError(
            f"model {model!r} is not Matryoshka-trained: its vectors cannot be truncated; dimensions must be "
            f"{width} or omitted (got {dimensions})", param="dimensions", code="dimensions_not_supported",
        )


@contextmanager
def held_request(pool: Pool) -> Iterator[RequestContext]:
    """The current request's context, whose snapshot the front door holds; outside a server (no
    front door), a fresh one holding ``pool``'s current snapshot for the ``with`` block."""
    ctx = current_request.get()
    if ctx is not None and ctx.snapshot is not None:
        yield ctx
        return
    with pool.acquire() as snap:
        ctx = RequestContext(ctx.request_id if ctx is not None else "", snapshot=snap)
        token = current_request.set(ctx)
        try:
            yield ctx
        finally:
            current_request.reset(token)


class EmbeddingService:
    """Resolves aliases and limits, then walks the routing plan of the snapshot it runs on."""

    def __init__(self, pool: Pool, metrics: GatewayMetrics, cache: CacheStore | None = None) -> None:
        self.pool = pool
        self.metrics = metrics
        #: the embedding cache in front of the engines (None: every job goes to an engine)
        self.cache = cache
        #: told of each served request (the live shadow A/B); None: nobody listens
        self.tap: ServedTap | None = None

    async def embed(self, spec: EmbeddingSpec, *, deadline: float | None = None, tap: bool = True) -> EmbedOutcome:
        """Serve one request. ``deadline`` (``time.monotonic()``) defaults to now +
        ``limits.request_timeout``; past it the request is a 504 and its queued work is dropped
        (the engine call is cancelled, which withdraws it from the engine's queue). ``tap=False``:
        the request is not shown to :attr:`tap` (a shadow's own request is never sampled again)."""
        with held_request(self.pool) as ctx:
            snap = ctx.snapshot
            assert snap is not None
            timeout = snap.settings.limits.request_timeout
            if deadline is None and timeout is not None:
                deadline = time.monotonic() + timeout
            if deadline is None:
                return await self._embed(snap, spec, ctx, deadline=None, tap=tap)
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout_at(loop.time() + (deadline - time.monotonic())):
                    return await self._embed(snap, spec, ctx, deadline=deadline, tap=tap)
            except TimeoutError:
                limit = f" (limits.request_timeout = {timeout:g} s)" if timeout is not None else ""
                err = EngineTimeoutError(
                    f"the request did not finish within its deadline{limit}; its queued work was dropped",
                    engine=ctx.engine or None,
                )
                member = snap.members.get(ctx.engine)
                if member is not None:  # a wedged engine times out every request: let its breaker see it
                    self.pool.supervisor.record_failure(member, err)
                raise err from None

    async def _embed(
        self, snap: Snapshot, spec: EmbeddingSpec, ctx: RequestContext, *, deadline: float | None, tap: bool
    ) -> EmbedOutcome:
        settings = snap.settings
        resolved = resolve_model(snap, spec.model)
        name, model = spec.model or resolved.name, resolved.model
        task = spec.task if spec.task_given else resolved.task
        dimensions = spec.dimensions if spec.dimensions is not None else resolved.dimensions
        key = route_key(task)
        ctx.model, ctx.model_id, ctx.task, ctx.inputs = name, model, key, len(spec.inputs)
        check_task(snap, model, task)
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
        supervisor = self.pool.supervisor
        order = supervisor.plan(
            snap, task, model=model, token_ids=spec.has_token_ids, late_chunking=spec.late_chunking,
            token_embeddings=spec.token_embeddings,
        )
        if spec.outputs != {DENSE}:
            order = check_outputs(snap, model, order, spec.outputs)
        caps = [snap.members[n].capabilities for n in order]
        check_dimensions(dimensions, max(c.dimensions for c in caps), matryoshka=all(c.matryoshka for c in caps),
                         model=model)
        spaces = {n: supervisor.space(snap, n, task, dimensions, spec.normalized).id for n in order}
        if spec.expect_space is not None:
            order = _in_space(order, spaces, spec.expect_space, model)
        ctx.space = spaces[order[0]]

        job = EmbedJob(
            inputs=spec.inputs,
            task=task,
            truncate=spec.truncate,
            late_chunking=spec.late_chunking,
            chunking=spec.chunking,
            request_id=ctx.request_id,
            deadline=deadline,
            max_total_tokens=limits.max_tokens_per_request,
            truncation_direction=spec.truncation_direction,
            token_embeddings=spec.token_embeddings,
            outputs=spec.outputs,
        )
        identity = snap.members[order[0]].capabilities.identity
        cache = self.cache
        token_states = sparse = multivectors = None
        # per-token output (TEI's /embed_all), sparse and multi-vector outputs are not cached: an
        # entry holds one pooled vector
        if (cache is None or not cache.enabled or spec.cache == "off" or identity is None or spec.token_embeddings
                or spec.outputs != {DENSE}):
            ctx.cache = "off"
            result, served_by = await self._serve(snap, order, job, key, ctx)
            ctx.space = spaces[served_by]
            vectors, token_counts, spans, token_states = (
                result.vectors, result.token_counts, result.spans, result.token_states
            )
            sparse, multivectors = result.sparse, result.multivectors
        else:
            # the one place the cache sits: before the engines, keyed by who the plan would ask first
            served = await serve_cached(
                cache, KeyScope(identity, task, spec.truncate, spec.truncation_direction), job,
                lambda sub, pin: self._compute(snap, [pin] if pin else order, sub, key, ctx),
                read=spec.cache == "use",
            )
            ctx.cache = served.source
            vectors, token_counts, spans = served.vectors, served.token_counts, served.spans
            if served.engine is not None:
                ctx.space = spaces.get(served.engine, ctx.space)
            if served.engine is None:  # every vector from the cache: name the engine they are keyed by
                ctx.engine, ctx.fallbacks, ctx.queue_seconds, ctx.inference_seconds = order[0], 0, 0.0, 0.0
            # the request's own size for its access line (engine metrics counted only what engines ran)
            ctx.inputs, ctx.tokens = len(vectors), sum(token_counts)
        outcome = EmbedOutcome(
            vectors=finalize(vectors, dimensions, spec.normalized),
            token_counts=token_counts,
            model=name,
            spans=spans,
            token_states=token_states,
            sparse=sparse,
            multivectors=multivectors,
            model_id=model,
            space=ctx.space or None,
        )
        if tap and self.tap is not None:
            try:
                self.tap(snap, resolved, spec, task, outcome)
            except Exception:  # a listener's bug must not fail the request it listens to
                log.exception("the served-request tap failed")
        return outcome

    async def _compute(self, snap: Snapshot, order: list[str], job: EmbedJob, key: str, ctx: RequestContext) -> Computed:
        result, member = await self._serve(snap, order, job, key, ctx)
        return Computed(result, member, snap.members[member].capabilities.identity)


    async def _serve(
        self, snap: Snapshot, order: list[str], job: EmbedJob, key: str, ctx: RequestContext
    ) -> tuple[EmbedResult, str]:
        """Walk the plan: fall over to the next engine at once on a retryable error, retry the last.
        Returns the result and the member that served it."""
        supervisor = self.pool.supervisor
        settings = snap.settings
        for attempt, engine_name in enumerate(order):
            member = snap.members[engine_name]
            last = attempt + 1 == len(order)
            started = time.perf_counter()
            ctx.engine, ctx.fallbacks = engine_name, attempt
            try:
                with supervisor.serving(member):
                    result = await (self._with_retries(member, job, key, settings) if last else self._once(member, job))
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
            return result, engine_name
        raise EngineUnavailableError("no engine could serve the request")  # unreachable: plan() is never empty

    async def _once(self, member: Member, job: EmbedJob) -> EmbedResult:
        """One attempt; its outcome feeds the engine's circuit breaker."""
        try:
            result = await member.engine.embed(job)
        except RetryableError as err:
            self.pool.supervisor.record_failure(member, err)
            raise
        self.pool.supervisor.record_success(member)
        return result

    async def _with_retries(self, member: Member, job: EmbedJob, key: str, settings: Settings) -> EmbedResult:
        """The last engine a request can go to: retry retryable errors per the one policy."""

        def count(err: BaseException) -> None:
            code = err.code if isinstance(err, EmbedGatewayError) else type(err).__name__
            self.metrics.retries.labels(task=key, engine=member.name, reason=code).inc()

        return await call_retrying(lambda: self._once(member, job), settings.retry, deadline=job.deadline, on_retry=count)


def _in_space(order: list[str], spaces: dict[str, str], expected: str, model: str) -> list[str]:
    """The engines of ``order`` whose vectors are in the ``expected`` space; a 409 naming both when
    none is (a reload changed the weights, only an engine outside parity is left, ...)."""
    able = [n for n in order if spaces[n] == expected]
    if not able:
        raise SpaceMismatchError(
            f"the request expects vector space {expected!r} (x-embed-expect-space) but model {model!r} would "
            f"serve it in space {spaces[order[0]]!r}; vectors of two spaces must not be mixed: re-embed into a "
            "new collection, or pin the new space",
            param="x-embed-expect-space",
        )
    return able


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

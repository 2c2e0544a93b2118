"""The embeddings use case: resolve the alias, check limits, route, fall back, post-process.

Routes call :meth:`EmbeddingService.embed` with a validated spec and render what it returns;
all policy lives here, all wire concerns in :mod:`gateway.api`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.api.schemas import EmbeddingSpec
from gateway.config import AliasSettings, Settings
from gateway.contract import (
    EmbedGatewayError,
    EmbedJob,
    EmbedResult,
    EngineError,
    Engine,
    EngineUnavailableError,
    InvalidRequestError,
    ModelNotFoundError,
    Task,
    is_retryable,
)
from gateway.postprocess import finalize
from gateway.routing import plan, route_key

__all__ = ["EmbedOutcome", "EmbeddingService", "default_routes"]

log = logging.getLogger(__name__)


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


def default_routes(engines: Mapping[str, Engine]) -> dict[str, list[str]]:
    keys = [route_key(t) for t in (*Task, None)]
    return {k: [n for n, e in engines.items() if any(route_key(t) == k for t in e.capabilities.tasks)] for k in keys}


class EmbeddingService:
    def __init__(self, settings: Settings, engines: Mapping[str, Engine]) -> None:
        self.settings = settings
        self.engines = dict(engines)
        self.routes = default_routes(self.engines)
        self.fallbacks = 0

    def alias(self, model: str | None) -> tuple[str, AliasSettings]:
        name = model or self.settings.api.default_model
        alias = self.settings.aliases.get(name)
        if alias is None:
            known = ", ".join(sorted(self.settings.aliases))
            raise ModelNotFoundError(f"the model {name!r} does not exist; available: {known}", param="model")
        return name, alias

    async def embed(self, spec: EmbeddingSpec, *, request_id: str = "", deadline: float | None = None) -> EmbedOutcome:
        name, alias = self.alias(spec.model)
        task = spec.task if spec.task_given else alias.task
        dimensions = spec.dimensions if spec.dimensions is not None else alias.dimensions
        limits = self.settings.limits
        if len(spec.inputs) > limits.max_inputs_per_request:
            raise InvalidRequestError(
                f"input has {len(spec.inputs)} items; the limit is {limits.max_inputs_per_request} per request",
                param="input",
            )
        if spec.has_token_ids and self.settings.api.token_ids == "reject":
            raise InvalidRequestError(
                "token-id input is disabled on this server: ids from another tokenizer (e.g. OpenAI's tiktoken) "
                "would embed as garbage. Send the text itself (in LangChain: check_embedding_ctx_length=False; "
                "see docs/api.md), or ask the operator to set api.token_ids: accept if your ids are XLM-R ids.",
                param="input",
                code="token_ids_not_accepted",
            )
        caps = {n: e.capabilities for n, e in self.engines.items()}
        order = plan(task, self.routes, caps, late_chunking=spec.late_chunking, token_ids=spec.has_token_ids)
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
        )
        last: EmbedGatewayError | None = None
        for attempt, engine_name in enumerate(order):
            started = time.perf_counter()
            try:
                result = await self.engines[engine_name].embed(job)
            except EmbedGatewayError as err:
                if not is_retryable(err):
                    raise
                log.warning("engine %s failed (%s); %s", engine_name, err.message,
                            "falling back" if attempt + 1 < len(order) else "no engine left")
                last = err
                continue
            _check_shape(result, job)
            if attempt:
                self.fallbacks += attempt
            log.debug("engine %s served %d inputs in %.1f ms", engine_name, len(job.inputs),
                      1000 * (time.perf_counter() - started))
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
            )
        raise last or EngineUnavailableError("no engine could serve the request")


def _check_shape(result: EmbedResult, job: EmbedJob) -> None:
    """One vector per input (per chunk for a chunking job, with its character range): an engine
    that breaks this is a bug, reported as such rather than as a confusing response."""
    if job.chunking is not None:
        ok = result.spans is not None and len(result.spans) == len(result.vectors) >= 1
    else:
        ok = len(result.vectors) == len(job.inputs)
    if not ok:
        raise EngineError(f"engine {result.engine} returned {len(result.vectors)} vectors for this job", engine=result.engine)

"""``OpenAIEngine``: the ``openai`` engine kind, any OpenAI-compatible ``/v1/embeddings`` server.

vLLM serving another model, TEI's ``/v1``, Infinity, a hosted API: the gateway sends texts and
gets vectors, nothing more. What it cannot see of a remote model is declared in the settings or
discovered at start (one probe embedding gives the dimension and whether vectors come back
unit-length). Only texts are sent (token ids would need the upstream's tokenizer), with each
task's prompt in front; ``usage.prompt_tokens`` becomes one token-count entry per upstream call.

Start is strict about configuration and lenient about the network: a wrong key, an unknown model,
a vector of another dimension than declared stop the engine with a message that says so; an
unreachable upstream only does when its dimension must be discovered (declare ``dimensions`` to
start without it). The key is read from the environment variable the settings name, sent as a
bearer token, and never logged or shown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import numpy.typing as npt

from engine_vllm.errors import from_response, vllm_message
from engine_vllm.upstream import UpstreamHTTP
from engine_vllm.wire import MalformedResponse, parse_embeddings, parse_models
from gateway.contract import (
    DENSE,
    NULL_OBSERVER,
    EmbedGatewayError,
    EmbedJob,
    EmbedResult,
    Engine,
    EngineCapabilities,
    EngineError,
    EngineObserver,
    EngineOverloadedError,
    EngineUnavailableError,
    Health,
    InvalidRequestError,
    PayloadTooLargeError,
    RetryableError,
    TooManyTokensError,
    UnsupportedTaskError,
    route_key,
    task_of_key,
)

if TYPE_CHECKING:
    from engine_vllm.settings import OpenAIUpstreamSettings

__all__ = ["UNKNOWN_MAX_INPUT_TOKENS", "MisconfiguredUpstream", "OpenAIEngine", "build"]

log = logging.getLogger(__name__)

#: ``capabilities.max_input_tokens`` when the upstream's limit is not declared: no limit the
#: gateway knows of (the upstream refuses over-long input itself, as a 400)
UNKNOWN_MAX_INPUT_TOKENS = 2**31 - 1
#: how far from 1 a probe vector's norm may be for the upstream to count as normalising
_UNIT_TOLERANCE = 1e-3
_PROBE_TEXT = "dimension probe"


class MisconfiguredUpstream(EngineUnavailableError):
    """The upstream refused our key, or does not serve the configured model: waiting will not fix
    it, so start stops here (later, another engine may still serve the job)."""


class OpenAIEngine:
    """A model behind an OpenAI-compatible embeddings API (see docs/models.md)."""

    def __init__(
        self,
        settings: OpenAIUpstreamSettings,
        *,
        name: str = "openai",
        transport: httpx.AsyncBaseTransport | None = None,
        observer: EngineObserver = NULL_OBSERVER,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self._name = name
        self._observer = observer
        self._transport = transport
        #: where ``api_key_env`` is looked up (the process environment unless a test passes its own)
        self._environ = environ
        #: task -> prompt put in front of each input
        self._prompts: dict[str | None, str] = (
            {task_of_key(k): v for k, v in settings.tasks.items()} if settings.tasks else {None: ""}
        )
        self._dimensions: int | None = settings.dimensions
        self._normalized: bool | None = settings.normalized
        self._queued_inputs = 0
        self._key: str | None = None
        self._http: UpstreamHTTP | None = None
        self._discover_lock = asyncio.Lock()

    # ------------------------------------------------------------------ contract

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> EngineCapabilities:
        s = self.settings
        return EngineCapabilities(
            tasks=frozenset(self._prompts),
            # 0 only while neither declared nor discovered: start failed, the engine serves nothing
            dimensions=self._dimensions or 0,
            max_input_tokens=s.max_input_tokens or UNKNOWN_MAX_INPUT_TOKENS,
            late_chunking=False,
            token_ids=False,
            model=s.model,
            max_queued_inputs=s.max_queued_inputs,
            outputs=frozenset({DENSE}),
            matryoshka=s.matryoshka,
            identity=self._identity(),
            weights=self._weights(),
        )

    def _weights(self) -> str | None:
        """The operator's ``cache_identity``, else the model's name at its URL (a remote model can
        change under the same name: declare ``cache_identity``), with the task prompts and extra body."""
        s = self.settings
        shaping = json.dumps({"tasks": s.tasks, "extra_body": s.extra_body}, sort_keys=True, separators=(",", ":"))
        base = f"declared={s.cache_identity}" if s.cache_identity else f"{s.url}#{s.model}"
        return f"{base}|{shaping}"

    def _identity(self) -> str | None:
        """Only what the operator declares: a remote model can change under the same name."""
        s = self.settings
        if s.cache_identity is None:
            return None
        shaping = json.dumps({"tasks": s.tasks, "extra_body": s.extra_body}, sort_keys=True, separators=(",", ":"))
        return "|".join(("openai", f"model={s.model}", f"declared={s.cache_identity}", shaping))

    async def start(self) -> None:
        """Read the key, open the pools, check the key and the model, discover what is not declared."""
        s = self.settings
        headers: dict[str, str] = {}
        if s.api_key_env is not None:
            environ = self._environ if self._environ is not None else os.environ
            key = environ.get(s.api_key_env, "")
            if not key:
                raise MisconfiguredUpstream(
                    f"engine {self._name}: the environment variable {s.api_key_env} (api_key_env) is not set or empty",
                    engine=self._name,
                )
            self._key = key
            headers["authorization"] = f"Bearer {key}"
        self._http = UpstreamHTTP(
            s.url, engine=self._name, peer="upstream", headers=headers,
            connect_timeout=s.connect_timeout, read_timeout=s.read_timeout, health_timeout=s.health_timeout,
            max_connections=s.max_connections, transport=self._transport, on_status=self._status_error,
        )
        self._http.open()
        try:
            await self._check_model()
            await self._discover()
        except MisconfiguredUpstream:
            raise
        except RetryableError as exc:
            if self._dimensions is None:
                raise EngineUnavailableError(
                    f"{exc.message}; the vector dimension cannot be discovered without the upstream "
                    f"(declare engines.{self._name}.dimensions to start while it is away)",
                    engine=self._name,
                ) from exc
            log.warning("engine %s: upstream not usable yet (%s); it stays out of the route until a probe succeeds",
                        self._name, exc.message)
        except EmbedGatewayError as exc:  # a malformed answer, a refused probe: not something waiting fixes
            hint = " (the start-up probe: an upstream without base64 output needs encoding_format: float)" if (
                isinstance(exc, InvalidRequestError) and s.encoding_format == "base64") else ""
            raise MisconfiguredUpstream(f"engine {self._name}: {exc.message}{hint}", engine=self._name) from exc

    async def embed(self, job: EmbedJob) -> EmbedResult:
        if job.task not in self._prompts:
            what = "no task" if job.task is None else f"task {str(job.task)!r}"
            served = ", ".join(sorted(route_key(t) for t in self._prompts))
            raise UnsupportedTaskError(f"engine {self._name} serves {served}, not {what}", param="task")
        if job.late_chunking or job.token_embeddings or job.outputs != {DENSE}:
            raise UnsupportedTaskError(
                f"engine {self._name} (an OpenAI-compatible upstream) returns dense vectors only", param="input"
            )
        texts = [x for x in job.inputs if isinstance(x, str)]
        if len(texts) != len(job.inputs):
            raise UnsupportedTaskError(f"token-id input is not sent to engine {self._name}", param="input")
        if self._queued_inputs and self._queued_inputs + len(texts) > self.settings.max_queued_inputs:
            raise EngineOverloadedError(
                f"engine {self._name} is at capacity ({self._queued_inputs} inputs on their way to the upstream)",
                engine=self._name,
                retry_after=1.0,
            )
        self._queued(len(texts))
        try:
            return await self._embed_texts(texts, job)
        finally:
            self._queued(-len(texts))

    async def check_health(self) -> Health:
        extra: dict[str, object] = {
            "url": self._shown_url(), "model": self.settings.model, "dimensions": self._dimensions,
            "normalized": self._normalized, "queued_inputs": self._queued_inputs,
        }
        if self._http is None or not self._http.is_open:
            return Health(False, "not started", extra)
        try:
            response = await self._http.probe("/models")
        except httpx.TransportError as exc:
            return Health(False, f"upstream at {self._shown_url()} unreachable: {type(exc).__name__}", extra)
        if response.status_code in (401, 403):
            return Health(False, f"the upstream refused the API key (HTTP {response.status_code})", extra)
        if response.status_code != 200:
            return Health(False, f"upstream GET /models answered {response.status_code}", extra)
        if self._dimensions is None or self._normalized is None:
            try:
                await self._discover()
            except EmbedGatewayError as exc:
                return Health(False, exc.message, extra)
            extra.update(dimensions=self._dimensions, normalized=self._normalized)
        return Health(True, "ok", extra)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def describe(self) -> dict[str, object]:
        """What GET /info may show: never the key, nor the variable that holds it."""
        s = self.settings
        return {
            "kind": s.kind, "url": self._shown_url(), "model": s.model, "dimensions": self._dimensions,
            "normalized": self._normalized, "matryoshka": s.matryoshka, "encoding_format": s.encoding_format,
            "tasks": sorted(route_key(t) for t in self._prompts), "authenticated": s.api_key_env is not None,
            "max_batch_inputs": s.max_batch_inputs, "cached": s.cache_identity is not None,
        }

    # ------------------------------------------------------------------ embedding

    def _queued(self, delta: int) -> None:
        self._queued_inputs += delta
        self._observer.queue(self._name, depth=self._queued_inputs, tokens=0)

    async def _embed_texts(self, texts: list[str], job: EmbedJob) -> EmbedResult:
        if self._dimensions is None:
            await self._discover()
        started = time.perf_counter()
        prompt = self._prompts[job.task]
        items = [prompt + t for t in texts] if prompt else texts
        step = self.settings.max_batch_inputs
        chunks = [items[i : i + step] for i in range(0, len(items), step)]
        outcomes = await asyncio.gather(*(self._embed_many(c, job.deadline) for c in chunks), return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            # an engine failure wins (another engine may serve the whole job), else the client's fault
            raise next((e for e in failed if isinstance(e, RetryableError)), failed[0])
        done = [o for o in outcomes if not isinstance(o, BaseException)]
        vectors = done[0][0] if len(done) == 1 else np.concatenate([v for v, _ in done])
        if vectors.shape[1] != self._dimensions:
            raise EngineError(
                f"engine {self._name}: the upstream returned {vectors.shape[1]}-dimensional vectors, not "
                f"{self._dimensions}: has its model changed? (restart the engine to take the new one)",
                engine=self._name,
            )
        counts = tuple(n for _, n in done)
        if job.max_total_tokens is not None and sum(counts) > job.max_total_tokens:
            # no tokenizer here: the upstream's own count, after the fact
            raise TooManyTokensError(sum(counts), job.max_total_tokens)
        return EmbedResult(vectors=vectors, token_counts=counts, engine=self._name,
                           inference_seconds=time.perf_counter() - started)

    async def _embed_many(self, items: Sequence[str], deadline: float | None) -> tuple[npt.NDArray[np.float32], int]:
        """One ``POST /embeddings``: ``[len(items), d]`` vectors and the upstream's token count."""
        s = self.settings
        body: dict[str, Any] = {**s.extra_body, "model": s.model, "input": list(items), "encoding_format": s.encoding_format}
        payload = await self._connection().call("POST", "/embeddings", body, deadline)
        try:
            return parse_embeddings(payload, len(items)), _prompt_tokens(payload)
        except MalformedResponse as exc:
            raise EngineError(f"engine {self._name}: POST /embeddings: {exc}", engine=self._name) from exc

    # ------------------------------------------------------------------ start-up checks

    async def _check_model(self) -> None:
        """``GET /models``: the key is accepted and the upstream lists the configured model."""
        payload = await self._connection().call("GET", "/models", None, None)
        try:
            served = [m.id for m in parse_models(payload)]
        except MalformedResponse as exc:
            raise MisconfiguredUpstream(f"engine {self._name}: GET /models: {exc}", engine=self._name) from exc
        if self.settings.model not in served:
            listed = ", ".join(served[:20]) + (", ..." if len(served) > 20 else "")
            raise MisconfiguredUpstream(
                f"engine {self._name}: the upstream does not serve model {self.settings.model!r} (it lists {listed})",
                engine=self._name,
            )

    async def _discover(self) -> None:
        """One probe embedding: the dimension and whether vectors are unit-length, checked against
        what is declared (a wrong declaration would give wrong vectors silently)."""
        async with self._discover_lock:
            if self._dimensions is not None and self._normalized is not None:
                return
            vectors, _ = await self._embed_many([_PROBE_TEXT], None)
            dims, norm = int(vectors.shape[1]), float(np.linalg.norm(vectors[0].astype(np.float64)))
            unit = abs(norm - 1.0) <= _UNIT_TOLERANCE
            s = self.settings
            if s.dimensions is not None and dims != s.dimensions:
                raise MisconfiguredUpstream(
                    f"engine {self._name}: dimensions is declared {s.dimensions} but the upstream returns {dims}",
                    engine=self._name,
                )
            if s.normalized is not None and unit != s.normalized:
                raise MisconfiguredUpstream(
                    f"engine {self._name}: normalized is declared {str(s.normalized).lower()} but the upstream's "
                    f"probe vector has norm {norm:.4f}",
                    engine=self._name,
                )
            self._dimensions, self._normalized = dims, unit
            log.info("engine %s: upstream %s serves %r: %d dimensions, %s", self._name, self._shown_url(),
                     s.model, dims, "unit-length" if unit else "not normalised")

    # ------------------------------------------------------------------ the boundary

    def _connection(self) -> UpstreamHTTP:
        if self._http is None:
            raise EngineUnavailableError(f"engine {self._name} is not started", engine=self._name)
        return self._http

    def _status_error(self, response: httpx.Response, what: str) -> EmbedGatewayError:
        """A non-2xx answer: the client's fault (400/413/422) or the engine's (the rest)."""
        status = response.status_code
        if status in (401, 403):  # the body may echo part of the key: not logged
            log.warning("engine %s: the upstream refused the API key on %s (HTTP %d)", self._name, what, status)
            return MisconfiguredUpstream(
                f"engine {self._name}: the upstream refused the API key (HTTP {status}); check the variable "
                f"api_key_env names",
                engine=self._name,
            )
        if status == 404:
            log.warning("engine %s: upstream answered %s with 404: %s", self._name, what, self._scrub(vllm_message(response)))
            return MisconfiguredUpstream(
                f"engine {self._name}: the upstream answered {what} with HTTP 404: it does not serve model "
                f"{self.settings.model!r}, or the url (which must include /v1) is wrong",
                engine=self._name,
            )
        if status in (400, 422):
            detail = self._scrub(vllm_message(response))
            log.info("engine %s: upstream refused %s with %d: %s", self._name, what, status, detail)
            return InvalidRequestError(f"the upstream model refused the input (HTTP {status}): {detail}", param="input")
        if status == 413:
            return PayloadTooLargeError(
                "the upstream model refused the request as too large (HTTP 413); send fewer or shorter inputs",
                param="input",
            )
        return from_response(response, engine=self._name, what=what, peer="upstream")

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _shown_url(self) -> str:
        """The URL without any user:password part."""
        return str(httpx.URL(self.settings.url).copy_with(username=None, password=None))


def _prompt_tokens(payload: Any) -> int:
    """``usage.prompt_tokens`` (or ``total_tokens``; 0 where the upstream reports no usage)."""
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return 0
    for key in ("prompt_tokens", "total_tokens"):
        n = usage.get(key)
        if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
            return n
    return 0


def build(settings: OpenAIUpstreamSettings, *, name: str, observer: EngineObserver = NULL_OBSERVER) -> Engine:
    """The gateway's registry entry for ``kind: openai``: the engine, not started."""
    return OpenAIEngine(settings, name=name, observer=observer)

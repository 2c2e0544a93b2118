"""``VLLMEngine``: the engine contract over HTTP to a vLLM OpenAI-compatible server.

vLLM merges only the text-matching adapter at load, so this engine declares text-matching and
nothing else; the router sends every other task elsewhere.

Token counting uses vLLM's own tokenizer, so over-long input gets the same 400 as on the HF engine
(naming the input and its token count) and ``usage`` counts the same tokens. A job goes to vLLM as
ONE ``POST /v1/embeddings`` with all its inputs — as a client calling vLLM directly would send it,
so vLLM's HTTP front end does no more work behind the gateway than without it — whenever no input
can be over ``max_input_tokens`` without vLLM refusing the call: vLLM's ``max_model_len`` equals the
limit (it refuses over-long input itself), or every input is too short to reach it. Otherwise, or
when vLLM refuses the batch, every input is its own call (all sent at once; vLLM batches them),
whose ``usage`` is that input's exact count; an input that vLLM refuses or that comes back over
``max_input_tokens`` is counted with ``POST /tokenize``: it then gets the 400, or with ``truncate``
is cut like the HF engine cuts it (first ``max_input_tokens - 1`` tokens and ``</s>``) and embedded
from those ids.

With the served model's tokenizer (``tokenizer``, checked once against vLLM's ``/tokenize``) at
most ``max_calls`` calls are in flight (:mod:`engine_vllm.coalesce`): a job that finds vLLM idle
goes as above; any other is tokenized here (limits on exact counts, ``usage`` the ids per input)
and goes as token ids, alone on a free call or with the others waiting in the next one. Token ids
go to vLLM's ``POST /pooling`` (task ``embed``) once discovery has seen it answer the same vectors
and count as ``/v1/embeddings`` for the same ids: vLLM's front end validates an id list there for a
fraction of what ``/v1/embeddings`` costs it (see :func:`engine_vllm.wire.pooling_body`). A vLLM
without that route keeps getting them on ``/v1/embeddings``. Calls are shared only where vLLM's
passes are short: discovery times its answer to one short text, and over ``share_below_ms`` every
job goes on a call of its own, at once, as a client would send it.

The HTTP side is :class:`~engine_vllm.upstream.UpstreamHTTP` (pooled keep-alive connections, health
probes on a pool of their own: a pool full of slow embedding calls must not make a healthy vLLM
look dead).

Admission is bounded like the HF engine's queue: at most ``max_queued_inputs`` inputs may be on
their way to vLLM; beyond that a job is refused as overloaded (the router falls over to HF, then
429). ``limits.max_tokens_per_request`` is checked before anything is embedded: when the inputs
are long enough that they *could* exceed it, they are counted with ``/tokenize`` first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import numpy as np
import numpy.typing as npt

from engine_vllm.coalesce import Coalescer
from engine_vllm.errors import RefusedInput
from engine_vllm.managed import VLLMProcess
from engine_vllm.tokens import CHECK_TEXTS, LocalTokenizer, is_hub_name, tokenizer_from_command, tokenizer_path
from engine_vllm.upstream import UpstreamHTTP
from engine_vllm.wire import (
    MalformedResponse,
    ServedModel,
    embeddings_body,
    fit_to_limit,
    parse_embeddings,
    parse_models,
    parse_prompt_tokens,
    parse_tokens,
    pooling_body,
    stack_rows,
    tokenize_body,
)
from gateway.contract import (
    NULL_OBSERVER,
    EmbedJob,
    EmbedResult,
    EngineCapabilities,
    EngineError,
    EngineObserver,
    EngineOverloadedError,
    EngineTimeoutError,
    EngineUnavailableError,
    Health,
    InputTooLongError,
    Task,
    TooManyTokensError,
    UnsupportedTaskError,
    route_key,
    task_of_key,
)

if TYPE_CHECKING:
    from engine_vllm.settings import VLLMEngineSettings

__all__ = ["VLLMEngine", "token_bound"]

#: vLLM's routes for embeddings: the OpenAI one, and its pooling one (token ids, see ``_route_for_ids``)
EMBEDDINGS = "/v1/embeddings"
POOLING = "/pooling"

T = TypeVar("T")

log = logging.getLogger(__name__)

#: jina-embeddings-v3's full output dimension, assumed until vLLM's first vector says otherwise
_DEFAULT_DIMENSIONS = 1024

#: Most tokens one character can become: NFKC normalisation expands a character to at most 18
#: (U+FDFA), and the XLM-R tokenizer's pieces each cover at least one normalised character (plus
#: one leading "▁"). Used for a bound that needs no tokenizer: below it, counting is skipped.
_MAX_TOKENS_PER_CHAR = 18


def token_bound(texts: Sequence[str], per_input_limit: int) -> int:
    """An upper bound of the job's token count, computed without tokenising (see above): inputs
    over ``per_input_limit`` are refused or truncated, so none counts for more."""
    return sum(min(per_input_limit, _MAX_TOKENS_PER_CHAR * len(t) + 3) for t in texts)


async def _caught(work: Awaitable[T]) -> T | Exception:
    """``work``'s result or its error, as ``asyncio.gather(..., return_exceptions=True)`` gives them."""
    try:
        return await work
    except Exception as exc:  # noqa: BLE001 - handed back, judged by the caller
        return exc


class VLLMEngine:
    """Text-matching on a vLLM server (see docs/engines.md)."""

    def __init__(
        self,
        settings: VLLMEngineSettings,
        *,
        name: str = "vllm",
        transport: httpx.AsyncBaseTransport | None = None,
        observer: EngineObserver = NULL_OBSERVER,
    ) -> None:
        self.settings = settings
        self._name = name
        self._observer = observer
        #: inputs sent (or about to be sent) to vLLM and not answered yet
        self._queued_inputs = 0
        self._url = settings.url.rstrip("/")
        self._http = UpstreamHTTP(
            self._url, engine=name, peer="vLLM",
            headers={"authorization": f"Bearer {settings.api_key.get_secret_value()}"} if settings.api_key else None,
            connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
            health_timeout=settings.health_timeout, max_connections=settings.max_connections, transport=transport,
        )
        self._served: ServedModel | None = None
        self._dimensions: int | None = None
        self._discover_lock: asyncio.Lock | None = None
        self.process: VLLMProcess | None = (
            VLLMProcess(settings.managed, self._health_ok, name=name) if settings.managed.enabled else None
        )
        #: the served model's tokenizer, once checked against vLLM's (None: vLLM counts, one call per job)
        self._tokenizer: LocalTokenizer | None = None
        #: where token ids go: ``/pooling`` once discovery saw it answer as ``/v1/embeddings`` does
        self._ids_path = EMBEDDINGS
        #: vLLM's fastest round trip for one short text at discovery (with a tokenizer), ms
        self._idle_call_ms: float | None = None
        given = settings.tokenizer  # a hub name (org/name) is looked up in the local cache at discovery
        if given is not None and not is_hub_name(given) and tokenizer_path(given) is None:
            raise ValueError(f"engines.{name}.tokenizer: no tokenizer.json at {given!r}")
        #: built once per discovery (asked several times per request)
        self._capabilities: EngineCapabilities | None = None
        self._coalescer: Coalescer[list[int]] = Coalescer(
            self._send_ids, max_calls=settings.max_calls, max_inputs=settings.max_call_inputs
        )

    def _find_tokenizer(self) -> Path | None:
        s = self.settings
        if s.tokenizer is not None:
            return tokenizer_path(s.tokenizer)
        return tokenizer_from_command(s.managed.command) if s.managed.enabled else None

    # ------------------------------------------------------------------ contract

    @property
    def name(self) -> str:
        return self._name

    @property
    def _prompts(self) -> dict[str | None, str]:
        """Task -> the prompt put before each input (``tasks``; jina-v3's text-matching by default)."""
        tasks = self.settings.tasks
        if tasks is None:
            return {Task.TEXT_MATCHING: ""}
        return {task_of_key(k): v for k, v in tasks.items()}

    @property
    def capabilities(self) -> EngineCapabilities:
        if self._capabilities is None:
            self._capabilities = self._describe()
        return self._capabilities

    def _describe(self) -> EngineCapabilities:
        return EngineCapabilities(
            tasks=frozenset(self._prompts),
            dimensions=self._dimensions or _DEFAULT_DIMENSIONS,
            max_input_tokens=self.settings.max_input_tokens,
            late_chunking=False,
            # Token-id input goes to engines that check ids against their vocabulary themselves.
            token_ids=False,
            model=self._served.id if self._served else self.settings.model,
            max_queued_inputs=self.settings.max_queued_inputs,
            identity=self._identity(),
            weights=self._weights(),
        )

    def _weights(self) -> str | None:
        """What the server's weights are, as far as the gateway can tell: the operator's
        ``cache_identity``, else the served model's name at its URL (a restart with other weights
        under the same name goes unnoticed: declare ``cache_identity``), and the task prompts."""
        if self._served is None:
            return None
        s = self.settings
        base = f"declared={s.cache_identity}" if s.cache_identity else f"{self._url}#{self._served.id}"
        prompts = "" if s.tasks is None else "|prompts=" + "\x1f".join(f"{k}={v}" for k, v in sorted(s.tasks.items()))
        return base + prompts

    def _identity(self) -> str | None:
        """What the server computes with, for the cache's key (``EngineCapabilities.identity``): the
        operator's ``cache_identity``, else a managed server's whole command line (model, revision,
        dtype, quantization are on it); an external server we cannot describe is never cached."""
        s = self.settings
        if self._served is None:
            return None
        if s.cache_identity is not None:
            described = f"declared={s.cache_identity}"
        elif s.managed.enabled:
            described = "argv=" + "\x1f".join(s.managed.command)
        else:
            return None
        prompts = "" if s.tasks is None else "|prompts=" + "\x1f".join(f"{k}={v}" for k, v in sorted(s.tasks.items()))
        return "|".join(("engine_vllm", self._served.id, f"max_model_len={self._served.max_model_len}",
                         f"max_input_tokens={s.max_input_tokens}", described)) + prompts

    async def start(self) -> None:
        """Open the connection pool (and the managed process). An unreachable vLLM is not an error
        here: the gateway keeps it out of the route until a probe succeeds."""
        self._http.open()
        self._discover_lock = asyncio.Lock()
        if self.process is not None:
            await self.process.start()
            return
        try:
            await self._discover()
        except (EngineUnavailableError, EngineTimeoutError, EngineError) as exc:
            log.warning("engine %s: vLLM at %s not usable yet (%s); it stays out of the route until a probe succeeds",
                        self._name, self._url, exc.message)

    async def embed(self, job: EmbedJob) -> EmbedResult:
        prompts = self._prompts
        if job.task not in prompts:
            what = "no task" if job.task is None else f"task {str(job.task)!r}"
            served = ", ".join(route_key(t) for t in prompts)
            raise UnsupportedTaskError(f"engine {self._name} (vLLM) serves only {served}, not {what}", param="task")
        if job.late_chunking:
            raise UnsupportedTaskError("late chunking is not available on the vLLM engine", param="late_chunking")
        prompt = prompts[job.task]
        texts = [prompt + x for x in job.inputs if isinstance(x, str)]
        if len(texts) != len(job.inputs):
            raise UnsupportedTaskError("token-id input is not sent to the vLLM engine", param="input")
        limit = self.settings.max_queued_inputs
        if self._queued_inputs and self._queued_inputs + len(texts) > limit:
            raise EngineOverloadedError(
                f"engine {self._name} is at capacity ({self._queued_inputs} inputs on their way to vLLM)",
                engine=self._name,
                retry_after=1.0,
            )
        self._queued(len(texts))
        try:
            return await self._embed_texts(texts, job)
        finally:
            self._queued(-len(texts))

    def _queued(self, delta: int) -> None:
        self._queued_inputs += delta
        self._observer.queue(self._name, depth=self._queued_inputs, tokens=0)

    async def _embed_texts(self, texts: list[str], job: EmbedJob) -> EmbedResult:
        model = await self._model()
        started = time.perf_counter()
        tokenizer = self._tokenizer
        if tokenizer is None:
            return await self._embed_as_text(model, texts, job, started)
        # vLLM idle: the text itself, as a client calling vLLM directly sends it (vLLM counts; the
        # fastest way for one request). Else token ids: alone on a free call, or with the others
        # waiting in the next one (ids also spare vLLM's front end its tokenizing under load)
        if not (self._coalescer.idle and self._coalescer.try_acquire()):
            return await self._embed_tokenized(tokenizer, texts, job, started)
        try:
            return await self._embed_as_text(model, texts, job, started)
        finally:
            self._coalescer.release()

    async def _embed_as_text(self, model: str, texts: list[str], job: EmbedJob, started: float) -> EmbedResult:
        if job.max_total_tokens is not None and token_bound(texts, self.settings.max_input_tokens) > job.max_total_tokens:
            await self._check_total(model, texts, job, job.max_total_tokens)
        if len(texts) > 1 and self._batch_is_safe(texts):
            try:
                vectors, total = await self._embed_many(model, texts, job.deadline)
            except RefusedInput:
                pass  # an input over vLLM's max_model_len: one call per input finds it and counts it
            else:
                # vLLM's usage is the batch total; the contract allows one entry for it
                return EmbedResult(vectors=vectors, token_counts=(total,), engine=self._name,
                                   inference_seconds=time.perf_counter() - started)
        # one call per input, all at once: vLLM batches them itself (continuous batching), and each
        # answer's usage is that input's exact token count (one input: awaited here, no task)
        outcomes = [await _caught(self._embed_text(model, 0, texts[0], job))] if len(texts) == 1 else (
            await asyncio.gather(*(self._embed_text(model, i, t, job) for i, t in enumerate(texts)), return_exceptions=True)
        )
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            # an engine failure wins (another engine may serve the whole job); else the first over-long input
            err = next((e for e in failed if not isinstance(e, InputTooLongError)), failed[0])
            if isinstance(err, RefusedInput):  # engine-internal: leaves as the plain EngineError it is
                raise EngineError(err.message, engine=self._name) from err
            raise err
        rows = [o for o in outcomes if not isinstance(o, BaseException)]
        return EmbedResult(
            vectors=stack_rows([vector for vector, _ in rows]),
            token_counts=tuple(n for _, n in rows),
            engine=self._name,
            queue_seconds=0.0,
            inference_seconds=time.perf_counter() - started,
        )

    async def _embed_tokenized(self, tokenizer: LocalTokenizer, texts: list[str], job: EmbedJob,
                               started: float) -> EmbedResult:
        """Tokenized here: limits applied to exact counts, the ids sent (with other jobs' when
        vLLM is busy), ``usage`` per input from the ids themselves."""
        limit = self.settings.max_input_tokens
        kept: list[list[int]] = []
        for i, ids in enumerate(tokenizer.encode(texts)):
            fitted, over = fit_to_limit(ids, limit, truncate=job.truncate, left=job.truncation_direction == "left")
            if over and not job.truncate:
                raise InputTooLongError(i, len(ids), limit)
            kept.append(fitted)
        counts = tuple(len(ids) for ids in kept)
        if job.max_total_tokens is not None and sum(counts) > job.max_total_tokens:
            raise TooManyTokensError(sum(counts), job.max_total_tokens)
        vectors = await self._coalescer.embed(kept, job.deadline)
        return EmbedResult(vectors=vectors, token_counts=counts, engine=self._name,
                           inference_seconds=time.perf_counter() - started)

    async def _send_ids(self, items: list[list[int]], deadline: float | None) -> npt.NDArray[np.float32]:
        """One call with ``items`` (ids of one or more jobs): their rows, vLLM's count checked."""
        model = await self._model()
        try:
            vectors, total = await self._embed_many(model, items, deadline, self._ids_path)
        except RefusedInput as refusal:  # every input is within max_model_len: vLLM should not refuse
            raise EngineError(refusal.message, engine=self._name) from refusal
        sent = sum(len(x) for x in items)
        if total != sent:
            raise EngineError(f"engine {self._name}: vLLM counted {total} tokens for {sent} token ids sent",
                              engine=self._name)
        return vectors

    def _batch_is_safe(self, texts: Sequence[str]) -> bool:
        """Whether one call for all ``texts`` cannot hide an input over ``max_input_tokens``."""
        limit = self.settings.max_input_tokens
        served = self._served
        if served is not None and served.max_model_len is not None and served.max_model_len <= limit:
            return True  # vLLM refuses any input over the limit itself
        return all(_MAX_TOKENS_PER_CHAR * len(t) + 3 <= limit for t in texts)

    async def _check_total(self, model: str, texts: list[str], job: EmbedJob, cap: int) -> None:
        """Count with vLLM's tokenizer before embedding anything: an over-long input is its 400
        (as on the HF engine), a total over ``cap`` the 413."""
        per_input = self.settings.max_input_tokens
        counts = [len(ids) for ids in await asyncio.gather(*(self._tokenize(model, t, job.deadline) for t in texts))]
        if not job.truncate:
            over = next((i for i, n in enumerate(counts) if n > per_input), None)
            if over is not None:
                raise InputTooLongError(over, counts[over], per_input)
        total = sum(min(n, per_input) for n in counts)
        if total > cap:
            raise TooManyTokensError(total, cap)

    async def check_health(self) -> Health:
        extra = self._health_extra()
        if not self._http.is_open:
            return Health(False, "not started", extra)
        try:
            response = await self._http.probe("/health")
        except httpx.TransportError as exc:
            state = f" (managed process {self.process.state.value})" if self.process is not None else ""
            return Health(False, f"vLLM at {self._url} unreachable: {type(exc).__name__}{state}", extra)
        if response.status_code != 200:
            return Health(False, f"vLLM /health answered {response.status_code}", extra)
        if self._served is None or self._dimensions is None:
            try:
                await self._discover()
            except (EngineUnavailableError, EngineTimeoutError, EngineError) as exc:
                return Health(False, exc.message, extra)
            extra = self._health_extra()  # what discovery learnt
        return Health(True, "ok", extra)

    def _health_extra(self) -> dict[str, object]:
        extra: dict[str, object] = {"url": self._url, "model": self._served.id if self._served else self.settings.model}
        if self._served is not None:
            extra["max_model_len"] = self._served.max_model_len
        if self._dimensions is not None:
            extra["dimensions"] = self._dimensions
        extra["queued_inputs"] = self._queued_inputs
        #: who counts tokens: the gateway (the served model's tokenizer, checked) or vLLM
        extra["tokenizer"] = str(self._tokenizer.file) if self._tokenizer is not None else "vllm"
        #: the route token ids take to vLLM; whether concurrent requests share calls, and why
        extra["ids_route"] = self._ids_path
        if self._tokenizer is not None:
            extra["shared_calls"] = self._coalescer.sharing
            extra["idle_call_ms"] = self._idle_call_ms
        if self.process is not None:
            extra["process"] = self.process.describe()
        return extra

    async def aclose(self) -> None:
        await self._coalescer.aclose()
        await self._http.aclose()
        if self.process is not None:
            await self.process.stop()

    # ------------------------------------------------------------------ discovery

    async def _model(self) -> str:
        if self._served is None:
            await self._discover()
        assert self._served is not None
        return self._served.id

    async def _discover(self) -> None:
        """Which model vLLM serves (and its length limit), and the vector dimension."""
        lock = self._discover_lock
        if lock is None:
            raise EngineUnavailableError(f"engine {self._name} is not started", engine=self._name)
        async with lock:
            if self._served is not None and self._dimensions is not None:
                return
            payload = await self._call("GET", "/v1/models", None, None)
            try:
                models = parse_models(payload)
            except MalformedResponse as exc:
                raise EngineError(f"engine {self._name}: GET /v1/models: {exc}", engine=self._name) from exc
            served = self._pick(models)
            try:
                started = time.perf_counter()
                vector, _ = await self._embed_one(served.id, "dimension probe", None)
                first = time.perf_counter() - started
            except RefusedInput as refusal:
                raise EngineError(refusal.message, engine=self._name) from refusal
            if self._tokenizer is None and (file := self._find_tokenizer()) is not None:
                self._tokenizer = await self._checked_tokenizer(served.id, file)
            if self._tokenizer is not None:
                self._ids_path = await self._route_for_ids(served.id, self._tokenizer)
                self._coalescer.sharing = await self._share_calls(served.id, first)
            self._served, self._dimensions = served, int(vector.shape[0])
            self._capabilities = None
            if self._tokenizer is None and self.settings.tokenizer is not None:
                log.warning("engine %s: tokenizer %r not found (a hub model not in the local Hugging Face cache "
                            "yet?); vLLM counts tokens", self._name, self.settings.tokenizer)
            log.info("engine %s: vLLM at %s serves %r (max_model_len %s, %d dimensions)",
                     self._name, self._url, served.id, served.max_model_len, self._dimensions)

    async def _checked_tokenizer(self, model: str, file: Path) -> LocalTokenizer | None:
        """The tokenizer at ``file`` if it gives vLLM's ids for a test text under every task's
        prompt; else None (logged): vLLM keeps counting."""
        try:  # loading takes a while for a real vocabulary: off the event loop, which may be serving
            local = await asyncio.to_thread(LocalTokenizer, file)
        except Exception as exc:  # noqa: BLE001 - a file tokenizers cannot read: not used, said why
            log.warning("engine %s: cannot read the tokenizer %s (%s); vLLM counts tokens", self._name, file, exc)
            return None
        texts = sorted({prompt + text for prompt in self._prompts.values() for text in CHECK_TEXTS})
        theirs = list(await asyncio.gather(*(self._tokenize(model, text, None) for text in texts)))
        if local.encode(texts) != theirs:
            log.warning("engine %s: the tokenizer %s gives other ids than vLLM's for the same text; "
                        "vLLM counts tokens (one call per request)", self._name, file)
            return None
        log.info("engine %s: tokenizing with %s (the same ids as vLLM's); up to %d calls in flight",
                 self._name, file, self.settings.max_calls)
        return local

    async def _share_calls(self, model: str, first: float) -> bool:
        """Whether concurrent requests share calls: vLLM's round trip for one short text at idle
        (the fastest of ``first`` and two more) under ``share_below_ms``. A short pass means vLLM's
        HTTP front end is what a request costs, and fewer, larger calls save it; a long one (a
        full-size model on a CPU) means the passes are, and a shared call, answering when its last
        input is done, holds rows that are ready (measured both ways: docs/benchmarks.md, the hop)."""
        limit = self.settings.share_below_ms
        fastest = first
        for _ in range(2 if limit is not None else 0):  # always sharing: nothing to decide, only shown
            started = time.perf_counter()
            await self._embed_one(model, "dimension probe", None)
            fastest = min(fastest, time.perf_counter() - started)
        self._idle_call_ms = round(fastest * 1000, 2)
        share = limit is None or self._idle_call_ms < limit
        log.info("engine %s: one short text takes vLLM %.1f ms at idle: concurrent requests %s", self._name,
                 self._idle_call_ms, f"share calls (up to {self.settings.max_calls} in flight)" if share
                 else f"go on calls of their own (over share_below_ms {limit})")
        return share

    async def _route_for_ids(self, model: str, tokenizer: LocalTokenizer) -> str:
        """``/pooling`` if vLLM answers it with the very vectors and count that ``/v1/embeddings``
        gives for the same ids (the check texts'); else ``/v1/embeddings`` (logged why). A vLLM
        that cannot be reached or does not answer in time fails discovery, which is tried again."""
        ids = tokenizer.encode(list(CHECK_TEXTS))
        try:
            reference, total = await self._embed_many(model, ids, None)
        except RefusedInput as refusal:
            raise EngineError(refusal.message, engine=self._name) from refusal
        try:
            vectors, counted = await self._embed_many(model, ids, None, POOLING)
        except (EngineError, EngineUnavailableError) as exc:
            if isinstance(exc.__cause__, httpx.TransportError):
                raise  # not an answer about the route
            why = exc.message  # no such route (404), or it refuses these parameters
        else:
            if counted == total and np.array_equal(vectors, reference):
                log.info("engine %s: token ids go to POST %s (the same vectors as %s)", self._name, POOLING, EMBEDDINGS)
                return POOLING
            why = f"it answered other vectors or another count ({counted} vs {total} tokens) than {EMBEDDINGS}"
        log.warning("engine %s: token ids go to POST %s: POST %s is not used (%s)", self._name, EMBEDDINGS, POOLING, why)
        return EMBEDDINGS

    def _pick(self, models: Sequence[ServedModel]) -> ServedModel:
        wanted, limit = self.settings.model, self.settings.max_input_tokens
        names = ", ".join(m.id for m in models)
        if wanted is None:
            if len(models) != 1:
                raise EngineUnavailableError(
                    f"engine {self._name}: vLLM serves several models ({names}); set engines.{self._name}.model", engine=self._name
                )
            served = models[0]
        else:
            found = [m for m in models if m.id == wanted]
            if not found:
                raise EngineUnavailableError(
                    f"engine {self._name}: vLLM does not serve {wanted!r} (it serves {names})", engine=self._name
                )
            served = found[0]
        if served.max_model_len is not None and served.max_model_len < limit:
            raise EngineUnavailableError(
                f"engine {self._name}: vLLM's max_model_len is {served.max_model_len} but engines.{self._name}.max_input_tokens "
                f"is {limit}; start vLLM with --max-model-len {limit} (or lower max_input_tokens on every engine)",
                engine=self._name,
            )
        return served

    # ------------------------------------------------------------------ HTTP

    async def _embed_text(self, model: str, index: int, text: str, job: EmbedJob) -> tuple[npt.NDArray[np.float32], int]:
        """One input: ``(vector, tokens)``, over-long input handled exactly as the HF engine does."""
        limit = self.settings.max_input_tokens
        try:
            vector, n_tokens = await self._embed_one(model, text, job.deadline)
        except RefusedInput:
            # vLLM refuses inputs over its --max-model-len; count to tell "too long" from anything else
            ids = await self._tokenize(model, text, job.deadline)
            if len(ids) <= limit:
                raise
            return await self._over_limit(model, index, ids, job)
        if n_tokens > limit:  # within vLLM's --max-model-len but over the gateway's limit
            return await self._over_limit(model, index, await self._tokenize(model, text, job.deadline), job)
        return vector, n_tokens

    async def _over_limit(self, model: str, index: int, ids: list[int], job: EmbedJob) -> tuple[npt.NDArray[np.float32], int]:
        limit = self.settings.max_input_tokens
        kept, _ = fit_to_limit(ids, limit, truncate=job.truncate, left=job.truncation_direction == "left")
        if not job.truncate:
            raise InputTooLongError(index, len(ids), limit)
        vector, _ = await self._embed_one(model, kept, job.deadline)
        return vector, len(kept)

    async def _embed_one(self, model: str, item: str | Sequence[int], deadline: float | None) -> tuple[npt.NDArray[np.float32], int]:
        vectors, n_tokens = await self._embed_many(model, [item], deadline)
        return vectors[0], n_tokens

    async def _embed_many(
        self, model: str, items: Sequence[str | Sequence[int]], deadline: float | None, path: str = EMBEDDINGS
    ) -> tuple[npt.NDArray[np.float32], int]:
        """One ``POST`` to ``path`` (``/v1/embeddings``, or ``/pooling`` for token ids):
        ``[len(items), d]`` vectors and vLLM's token total."""
        pooling = path == POOLING
        body = pooling_body(model, items) if pooling else embeddings_body(model, items)  # type: ignore[arg-type]
        payload = await self._call("POST", path, body, deadline)
        try:
            return parse_embeddings(payload, len(items), "data" if pooling else "embedding"), parse_prompt_tokens(payload)
        except MalformedResponse as exc:
            raise EngineError(f"engine {self._name}: POST {path}: {exc}", engine=self._name) from exc

    async def _tokenize(self, model: str, text: str, deadline: float | None) -> list[int]:
        payload = await self._call("POST", "/tokenize", tokenize_body(model, text), deadline)
        try:
            return parse_tokens(payload)
        except MalformedResponse as exc:
            raise EngineError(f"engine {self._name}: POST /tokenize: {exc}", engine=self._name) from exc

    async def _call(self, method: str, path: str, body: dict[str, Any] | None, deadline: float | None) -> Any:
        """One HTTP call; every failure leaves here as an error of the gateway's tree."""
        return await self._http.call(method, path, body, deadline)

    async def _health_ok(self) -> bool:
        if not self._http.is_open:
            return False
        try:
            response = await self._http.probe("/health")
        except httpx.TransportError:
            return False
        return response.status_code == 200

"""``BGEM3Engine``: the engine contract over :class:`engine_hf.bge_m3.model.BGEM3Model`.

Each input is one queued sequence carrying the outputs its job asked for; the shared batching kit
(:class:`engine_hf.scheduler.Scheduler`) puts sequences of many jobs into one padded forward pass,
and the model computes per sequence only what it asked for. BGE-M3 has no instructions: the one
task it serves is "no task" (``None``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from engine_hf.batching import BatchLimits
from engine_hf.bge_m3 import KIND
from engine_hf.bge_m3.checkpoint import locate_checkpoint
from engine_hf.bge_m3.model import BGEM3Model, M3Output
from engine_hf.cpu_kernels import detect_cpu, keep_freed_memory
from engine_hf.device import default_max_batch_tokens, numerics, resolve_device, resolve_precision
from engine_hf.scheduler import Scheduler
from engine_hf.tokenization import TextEncoder
from gateway.contract import (
    DENSE,
    MULTIVECTOR,
    NULL_OBSERVER,
    OUTPUTS,
    SPARSE,
    EmbedJob,
    EmbedResult,
    EngineCapabilities,
    EngineError,
    EngineObserver,
    EngineUnavailableError,
    Health,
    Output,
    TooManyTokensError,
    UnsupportedTaskError,
)

if TYPE_CHECKING:
    from engine_hf.bge_m3.settings import BGEM3Settings

__all__ = ["BGEM3Engine"]

_T = TypeVar("_T")

log = logging.getLogger(__name__)

#: threads tokenising off the event loop
_TOKENIZE_WORKERS = 2


@dataclass(frozen=True, slots=True)
class _Seq:
    ids: list[int]
    #: outputs besides dense this sequence's job asked for
    wants: frozenset[Output]


class BGEM3Engine:
    """In-process BAAI/bge-m3: dense, sparse (lexical weights) and multi-vector (ColBERT) outputs."""

    def __init__(
        self, settings: BGEM3Settings, *, name: str = "bge-m3", observer: EngineObserver = NULL_OBSERVER
    ) -> None:
        self.settings = settings
        self._name = name
        self._observer = observer
        self._revision: str | None = settings.revision
        self._weights_id: str | None = None
        self.model: BGEM3Model | None = None
        self.text: TextEncoder | None = None
        self._caps: EngineCapabilities | None = None
        self._scheduler: Scheduler[_Seq, M3Output] | None = None
        self._tokenize_pool = ThreadPoolExecutor(max_workers=_TOKENIZE_WORKERS, thread_name_prefix=f"{name}-tokenize")
        self._load_error: str | None = None
        self._closed = False

    # ------------------------------------------------------------------ contract

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> EngineCapabilities:
        # read on every request (routing, the cache key): built once the model is loaded
        return self._caps or self._describe()

    def _describe(self) -> EngineCapabilities:
        m, s = self.model, self.settings
        return EngineCapabilities(
            tasks=frozenset({None}),
            dimensions=m.hidden_size if m else 1024,
            max_input_tokens=self._max_tokens(),
            late_chunking=False,
            token_ids=True,
            token_embeddings=False,
            tokenizer=False,
            model=_display_name(s.model),
            revision=self._revision,
            dtype=("int8" if m.kernels == "int8" else str(m.dtype).removeprefix("torch.")) if m else None,
            device=str(m.device) if m else None,
            numerics=numerics(m.dtype, m.kernels) if m else None,
            max_batch_tokens=self._max_batch_tokens,
            max_batch_requests=s.max_batch_requests,
            max_queued_tokens=s.max_queued_tokens,
            tokenization_workers=_TOKENIZE_WORKERS,
            outputs=frozenset(OUTPUTS),
            matryoshka=False,
            vocab_size=m.vocab_size if m else None,
            resident_bytes=m.resident_bytes if m else None,
            identity=self._identity(),
            weights=self._weights_id,
        )

    def _max_tokens(self) -> int:
        """``max_input_tokens``, never beyond what the position table holds (8192 for BGE-M3)."""
        limit = self.settings.max_input_tokens
        return min(limit, self.model.max_tokens) if self.model else limit

    @property
    def _max_batch_tokens(self) -> int:
        device = self.model.device.type if self.model is not None else "cpu"
        return self.settings.max_batch_tokens or default_max_batch_tokens(device)

    def _identity(self) -> str | None:
        """Everything that moves a bit of the outputs; ``None`` until loaded (never cached)."""
        m = self.model
        if m is None or self._weights_id is None:
            return None
        return "|".join((
            KIND, self._weights_id, str(m.dtype).removeprefix("torch."), f"kernels={m.kernels}", m.device.type,
            f"max_input_tokens={self._max_tokens()}",
        ))

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self._load)
        except Exception as exc:
            self._load_error = f"{type(exc).__name__}: {exc}"
            raise
        s = self.settings
        self._scheduler = Scheduler(
            self._forward,
            BatchLimits(max_batch_tokens=self._max_batch_tokens, max_batch_requests=s.max_batch_requests, padded=True),
            name=self._name,
            max_queued_tokens=s.max_queued_tokens,
            observer=self._observer,
            gather_seconds=s.batch_gather_ms / 1000,
        )
        self._scheduler.start()
        if s.threads:
            await self._scheduler.run_in_worker(lambda: torch.set_num_threads(s.threads or 1))
        await self._scheduler.run_in_worker(self._warm_up)

    async def embed(self, job: EmbedJob) -> EmbedResult:
        scheduler, text = self._scheduler, self.text
        if scheduler is None or text is None:
            raise EngineUnavailableError(f"engine {self._name} is not loaded", engine=self._name)
        _check_job(job)
        with scheduler.arriving():
            encoded = await self._off_loop(
                lambda: text.encode(job.inputs, None, truncate=job.truncate, direction=job.truncation_direction)
            )
        total = sum(len(e.ids) for e in encoded)
        if job.max_total_tokens is not None and total > job.max_total_tokens:
            raise TooManyTokensError(total, job.max_total_tokens)
        wants = frozenset(job.outputs) - {DENSE}
        outcome = await scheduler.submit(
            [_Seq(e.ids, wants) for e in encoded], [len(e.ids) for e in encoded], deadline=job.deadline
        )
        out = outcome.results
        sparse = tuple(o.sparse for o in out if o.sparse is not None)
        multi = tuple(o.multivector for o in out if o.multivector is not None)
        return EmbedResult(
            vectors=np.stack([o.dense for o in out]),
            token_counts=tuple(len(e.ids) for e in encoded),
            engine=self._served_by,
            queue_seconds=outcome.queue_seconds,
            inference_seconds=outcome.inference_seconds,
            sparse=sparse if SPARSE in wants else None,
            multivectors=multi if MULTIVECTOR in wants else None,
        )

    async def check_health(self) -> Health:
        if self._load_error:
            return Health(False, f"load failed: {self._load_error}")
        if self._scheduler is None:
            return Health(False, "loading")
        problem = self._scheduler.problem
        if problem is not None:
            return Health(False, problem)
        return Health(
            True, "ok", {"queue_depth": self._scheduler.queue_depth, "queued_tokens": self._scheduler.queued_tokens}
        )

    async def aclose(self) -> None:
        if self._scheduler is not None:
            await self._scheduler.aclose()
        self._closed = True
        self._tokenize_pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ helpers

    @property
    def _served_by(self) -> str:
        """``name``, or ``name:int8`` for the lossy int8 engine (never taken for the exact one)."""
        return f"{self._name}:int8" if self.model is not None and self.model.kernels == "int8" else self._name

    async def _off_loop(self, fn: Callable[[], _T]) -> _T:
        """``fn`` on the tokenizer threads; once closed, the retryable "unavailable", not a 500."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._tokenize_pool, fn)
        except RuntimeError as exc:
            if self._closed:
                raise EngineUnavailableError(f"engine {self._name} is closed", engine=self._name) from exc
            raise

    # ------------------------------------------------------------------ worker side

    def _load(self) -> None:
        from transformers import AutoTokenizer

        s = self.settings
        started = time.perf_counter()
        ckpt = locate_checkpoint(
            s.model, revision=s.revision, cache_dir=s.cache_dir, local_files_only=s.local_files_only
        )
        self._revision = ckpt.revision or s.revision
        self._weights_id = ckpt.weights_id
        device = resolve_device(s.device)
        dtype, kernels = resolve_precision(s.dtype, s.cpu_kernels, device, detect_cpu())
        if s.threads:
            torch.set_num_threads(s.threads)
        if device.type == "cpu":
            keep_freed_memory()
        tok = AutoTokenizer.from_pretrained(str(ckpt.path), trust_remote_code=False)
        # the ids the reference drops from the lexical weights: cls, eos, pad and unk
        dropped = {i for i in (tok.cls_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) if i is not None}
        model = BGEM3Model(ckpt.path, device=device, dtype=dtype, kernels=kernels, dropped_ids=dropped)
        backend = tok.backend_tokenizer
        backend.no_truncation()
        backend.no_padding()
        self.text = TextEncoder(
            backend,
            instructions={},
            max_tokens=min(s.max_input_tokens, model.max_tokens),
            vocab_size=model.vocab_size,
            bos_id=tok.cls_token_id if tok.cls_token_id is not None else 0,
            eos_id=tok.sep_token_id if tok.sep_token_id is not None else 2,
        )
        self.model = model
        self._caps = self._describe()
        log.info(
            "loaded %s (bge-m3, %s/%s, kernels %s, %.0f MiB of weights) in %.1fs",
            s.model, device, dtype, kernels, model.resident_bytes / 2**20, time.perf_counter() - started,
        )

    def _warm_up(self) -> None:
        assert self.text is not None
        ids = self.text.encode(["warm up"], None, truncate=True)[0].ids
        self._forward([_Seq(ids, frozenset({SPARSE, MULTIVECTOR}))])

    def _forward(self, seqs: list[_Seq]) -> list[M3Output]:
        model = self.model
        if model is None:
            raise EngineUnavailableError("engine unloaded", engine=self._name)
        try:
            return model.forward([s.ids for s in seqs], [s.wants for s in seqs])
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise EngineError("out of GPU memory; lower max_batch_tokens", engine=self._name) from exc


def _check_job(job: EmbedJob) -> None:
    """What BGE-M3 cannot do is the client's error (400), named after what was asked."""
    if job.task is not None:
        raise UnsupportedTaskError(
            f"bge-m3 takes no task (it has no instructions); got task {job.task!r}", param="task"
        )
    if job.late_chunking:
        raise UnsupportedTaskError("this bge-m3 engine does not do late chunking", param="late_chunking")
    if job.token_embeddings:
        raise UnsupportedTaskError("this bge-m3 engine does not return token embeddings", param="input")
    unknown = set(job.outputs) - set(OUTPUTS)
    if unknown:
        raise UnsupportedTaskError(f"unknown outputs {sorted(unknown)}", param="outputs")


def _display_name(model: str) -> str:
    """The model as /info shows it: a hub id as is, a local directory by its name only (no paths)."""
    return Path(model).name if model.startswith((".", "/", "~")) else model

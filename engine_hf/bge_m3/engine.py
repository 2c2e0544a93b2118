"""``BGEM3Engine``: the engine contract over :class:`engine_hf.bge_m3.model.BGEM3Model`.

Each input is one queued sequence carrying the outputs its job asked for; the shared batching kit
(:class:`engine_hf.scheduler.Scheduler`) puts sequences of many jobs into one padded forward pass,
and the model computes per sequence only what it asked for. BGE-M3 has no instructions: the one
task it serves is "no task" (``None``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine_hf.bge_m3 import KIND
from engine_hf.bge_m3.checkpoint import fingerprint, locate_checkpoint
from engine_hf.bge_m3.model import BGEM3Model, M3Output, M3Shape
from engine_hf.bge_m3.settings import BGEM3Settings
from engine_hf.cpu_kernels import detect_cpu, keep_freed_memory
from engine_hf.device import resolve_device, resolve_precision, use_packed
from engine_hf.inprocess import InProcessEngine, Placement, check_total
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
    EngineObserver,
    EngineUnavailableError,
    Output,
    UnsupportedTaskError,
)

__all__ = ["BGEM3Engine"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Seq:
    ids: list[int]
    #: outputs besides dense this sequence's job asked for
    wants: frozenset[Output]


class BGEM3Engine(InProcessEngine[BGEM3Settings, _Seq, M3Output]):
    """In-process BAAI/bge-m3: dense, sparse (lexical weights) and multi-vector (ColBERT) outputs."""

    def __init__(
        self, settings: BGEM3Settings, *, name: str = "bge-m3", observer: EngineObserver = NULL_OBSERVER
    ) -> None:
        super().__init__(settings, name=name, observer=observer)
        self.text: TextEncoder | None = None
        #: what the encoder's config says (known before the weights)
        self.shape: M3Shape | None = None
        self._packed = False
        self._path: Path | None = None
        self._dropped: frozenset[int] = frozenset()
        #: the weights (where the passes run)
        self.model: BGEM3Model | None = None

    # ------------------------------------------------------------------ contract

    def _describe_model(self) -> EngineCapabilities:
        m = self.shape
        return EngineCapabilities(
            tasks=frozenset({None}),
            dimensions=m.hidden_size if m else 1024,
            max_input_tokens=self._max_tokens(),
            late_chunking=False,
            token_ids=True,
            token_embeddings=False,
            tokenizer=False,
            outputs=frozenset(OUTPUTS),
            matryoshka=False,
            vocab_size=m.vocab_size if m else None,
            resident_bytes=self._resident,
            identity=self._identity(),
            weights=self._weights_id,
        )

    def _max_tokens(self) -> int:
        """``max_input_tokens``, never beyond what the position table holds (8192 for BGE-M3)."""
        limit = self.settings.max_input_tokens
        return min(limit, self.shape.max_tokens) if self.shape else limit

    def _identity(self) -> str | None:
        """Everything that moves a bit of the outputs; ``None`` until loaded (never cached)."""
        where = self._placement
        if where is None or self._weights_id is None:
            return None
        return "|".join((
            KIND, self._weights_id, str(where.dtype).removeprefix("torch."), f"kernels={where.kernels}",
            where.device.type, "packed" if self._packed else "padded",
            f"max_input_tokens={self._max_tokens()}",
        ))

    async def embed(self, job: EmbedJob) -> EmbedResult:
        scheduler, text = self._scheduler, self.text
        if scheduler is None or text is None:
            raise self._not_loaded()
        _check_job(job)
        with scheduler.arriving():
            encoded = await self._off_loop(
                lambda: text.encode(job.inputs, None, truncate=job.truncate, direction=job.truncation_direction)
            )
        check_total(sum(len(e.ids) for e in encoded), job.max_total_tokens)
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

    # ------------------------------------------------------------------ worker side

    def _load_front(self) -> None:
        from transformers import AutoConfig, AutoTokenizer

        s = self.settings
        path = locate_checkpoint(s.model, revision=s.revision, cache_dir=s.cache_dir, local_files_only=s.local_files_only)
        self._name_weights(path, fingerprint)
        device = resolve_device(s.device)
        dtype, kernels = resolve_precision(s.dtype, s.cpu_kernels, device, detect_cpu())
        shape = M3Shape.of(AutoConfig.from_pretrained(str(path), trust_remote_code=False))
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
        # the ids the reference drops from the lexical weights: cls, eos, pad and unk
        self._dropped = frozenset(
            i for i in (tok.cls_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) if i is not None
        )
        backend = tok.backend_tokenizer
        backend.no_truncation()
        backend.no_padding()
        self.text = TextEncoder(
            backend,
            instructions={},
            max_tokens=min(s.max_input_tokens, shape.max_tokens),
            vocab_size=shape.vocab_size,
            bos_id=tok.cls_token_id if tok.cls_token_id is not None else 0,
            eos_id=tok.sep_token_id if tok.sep_token_id is not None else 2,
        )
        self._packed = use_packed(s.attention, device)
        self._path, self.shape, self._placement = path, shape, Placement(device, dtype, kernels)

    def _load_model(self) -> None:
        s, where, path = self.settings, self._placement, self._path
        assert where is not None and path is not None
        started = time.perf_counter()
        if s.threads:
            torch.set_num_threads(s.threads)
        if where.device.type == "cpu":
            keep_freed_memory()
        model = BGEM3Model(path, device=where.device, dtype=where.dtype, kernels=where.kernels,
                           dropped_ids=self._dropped, packed=self._packed)
        self.model = model
        log.info(
            "loaded %s (bge-m3, %s/%s, kernels %s, %s attention, %.0f MiB of weights) in %.1fs",
            s.model, where.device, where.dtype, where.kernels, "packed" if model.packed else "padded",
            model.resident_bytes / 2**20, time.perf_counter() - started,
        )

    def _model_bytes(self) -> int:
        assert self.model is not None
        return self.model.resident_bytes

    def _padded(self) -> bool:
        return not self._packed

    def _warm_up(self) -> None:
        assert self.text is not None
        ids = self.text.encode(["warm up"], None, truncate=True)[0].ids
        self._forward([_Seq(ids, frozenset({SPARSE, MULTIVECTOR}))])

    def _forward(self, seqs: list[_Seq]) -> list[M3Output]:
        model = self.model
        if model is None:
            raise EngineUnavailableError("engine unloaded", engine=self._name)
        return model.forward([s.ids for s in seqs], [s.wants for s in seqs])


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

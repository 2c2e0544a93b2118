"""``HFEngine``: the engine contract over :class:`engine_hf.model.JinaEncoder`.

Plain jobs queue one sequence per input and get one pooled row each. Late-chunking jobs queue one
payload per window of the document (one window when it fits a forward pass), each carrying the
chunk segments inside its kept range; the forward pass returns their token-state sums, and
:func:`engine_hf.late_chunking.combine` turns them into one mean per chunk. Both kinds share the
scheduler's queue and batches (a window is just a sequence whose result is a few sums).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from engine_hf.checkpoint import CheckpointInfo, checkpoint_fingerprint, describe_checkpoint, resolve_model_dir
from engine_hf.cpu_kernels import CpuFeatures, detect_cpu, keep_freed_memory
from engine_hf.device import numerics, resolve_device, resolve_precision, use_packed
from engine_hf.inprocess import InProcessEngine, Placement, check_total, module_bytes
from engine_hf.late_chunking import (
    EmptyChunkError,
    Segment,
    combine,
    plan_windows,
    spans_from_char_starts,
    spans_from_token_ranges,
    window_segments,
)
from engine_hf.model import JinaEncoder, build_config
from engine_hf.scheduler import Scheduler
from engine_hf.settings import HFEngineSettings
from engine_hf.tokenization import Document, TextEncoder, load_tokenizer
from gateway.contract import (
    NULL_OBSERVER,
    TASKS,
    ChunkingRule,
    EmbedJob,
    EmbedResult,
    EngineCapabilities,
    EngineObserver,
    EngineUnavailableError,
    InvalidRequestError,
    Task,
    Tokenized,
    UnsupportedTaskError,
)
from gateway.contract.chunking import group_sentences, split_sentences, token_chunks

__all__ = ["HFEngine"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Seq:
    ids: list[int]
    adapter: int  # -1 = no task
    #: None: pool the mean of the whole sequence; ``"tokens"``: every token's state; else the sums
    #: over each ``(start, end)``
    segments: tuple[tuple[int, int], ...] | Literal["tokens"] | None = None


@dataclass(frozen=True, slots=True)
class _LatePlan:
    """A late-chunking job, tokenised and cut: what to queue and how to put results together."""

    document: Document
    spans: list[tuple[int, int]]
    #: per window: its payload and the chunk segments it pools
    windows: list[tuple[_Seq, list[Segment]]]
    char_spans: tuple[tuple[int, int], ...] | None


class HFEngine(InProcessEngine[HFEngineSettings, _Seq, npt.NDArray[np.float32]]):
    """In-process jina-embeddings-v3 with all five adapters (see docs/engines.md)."""

    def __init__(
        self,
        settings: HFEngineSettings,
        *,
        name: str = "hf",
        observer: EngineObserver = NULL_OBSERVER,
        cpu: CpuFeatures | None = None,
    ) -> None:
        super().__init__(settings, name=name, observer=observer)
        #: the CPU the kernel choice follows (detected at load unless given: tests inject one)
        self._cpu = cpu
        self.info: CheckpointInfo | None = None
        #: adapter index of each task the checkpoint has
        self.task_index: dict[Task, int] = {}
        self.text: TextEncoder | None = None
        self._packed = False
        #: the weights (where the passes run)
        self.encoder: JinaEncoder | None = None

    # ------------------------------------------------------------------ contract

    def _padded(self) -> bool:
        return not self._packed

    def _twin_kwargs(self) -> dict[str, Any]:
        return {"cpu": self._cpu}

    def _describe_model(self) -> EngineCapabilities:
        info, s = self.info, self.settings
        tasks: frozenset[Task | None] = frozenset([*(info.tasks if info else TASKS), None])
        return EngineCapabilities(
            tasks=tasks,
            dimensions=info.hidden_size if info else 1024,
            max_input_tokens=info.max_input_tokens if info else s.max_input_tokens,
            late_chunking=True,
            token_ids=True,
            token_embeddings=True,
            tokenizer=True,
            identity=self._identity(),
            weights=self._weights_id,
            resident_bytes=self._resident,
        )

    def _identity(self) -> str | None:
        """Everything that moves a bit of this engine's vectors (see ``EngineCapabilities.identity``);
        ``None`` until the checkpoint is loaded."""
        where, s = self._placement, self.settings
        if where is None or self._weights_id is None:
            return None
        parts = (
            "engine_hf", self._weights_id, str(where.dtype).removeprefix("torch."), f"kernels={where.kernels}",
            where.device.type,
            s.adapter_mode, "packed" if self._packed else "padded", f"compile={s.compile}",
            f"max_input_tokens={self.info.max_input_tokens if self.info else s.max_input_tokens}",
            f"late={s.late_chunking_window_tokens}/{s.late_chunking_overlap_tokens}/{s.max_late_chunking_tokens}",
        )
        return "|".join(parts)

    async def embed(self, job: EmbedJob) -> EmbedResult:
        scheduler, text = self._scheduler, self.text
        if scheduler is None or text is None:
            raise self._not_loaded()
        _check_task(job.task, self.task_index)
        if job.late_chunking:
            return await self._embed_late(job, scheduler, text)
        with scheduler.arriving():
            encoded = await self._off_loop(
                lambda: text.encode(job.inputs, job.task, truncate=job.truncate, direction=job.truncation_direction),
            )
        check_total(sum(len(e.ids) for e in encoded), job.max_total_tokens)
        adapter = -1 if job.task is None else self.task_index[job.task]
        mode: Literal["tokens"] | None = "tokens" if job.token_embeddings else None
        outcome = await scheduler.submit(
            [_Seq(e.ids, adapter, mode) for e in encoded],
            [len(e.ids) for e in encoded],
            group=adapter if self.settings.adapter_mode == "merged" else None,
            deadline=job.deadline,
        )
        states = tuple(outcome.results) if job.token_embeddings else None
        return EmbedResult(
            vectors=np.stack([s.mean(axis=0) for s in outcome.results] if states else outcome.results),
            token_counts=tuple(len(e.ids) for e in encoded),
            engine=self._served_by,
            queue_seconds=outcome.queue_seconds,
            inference_seconds=outcome.inference_seconds,
            token_states=states,
        )

    async def tokenize(self, texts: Sequence[str], task: Task | None, *, add_special_tokens: bool) -> list[Tokenized]:
        text = self._loaded_text()
        if self.info is not None:
            _check_task(task, self.info.tasks)
        return await self._off_loop(lambda: text.tokenize(texts, task, add_special_tokens=add_special_tokens))

    async def decode(self, ids: Sequence[Sequence[int]], *, skip_special_tokens: bool) -> list[str]:
        text = self._loaded_text()
        return await self._off_loop(lambda: text.decode(ids, skip_special_tokens=skip_special_tokens))

    def _loaded_text(self) -> TextEncoder:
        if self.text is None:
            raise self._not_loaded()
        return self.text

    async def _embed_late(
        self,
        job: EmbedJob,
        scheduler: Scheduler[_Seq, npt.NDArray[np.float32]],
        text: TextEncoder,
    ) -> EmbedResult:
        if any(not isinstance(x, str) for x in job.inputs):
            raise InvalidRequestError(
                "late chunking needs text inputs: token spans are found from character offsets", param="input"
            )
        adapter = -1 if job.task is None else self.task_index[job.task]
        with scheduler.arriving():
            plan = await self._off_loop(lambda: self._plan_late(job, text, adapter))
        check_total(len(plan.document.ids), job.max_total_tokens)
        outcome = await scheduler.submit(
            [payload for payload, _ in plan.windows],
            [len(payload.ids) for payload, _ in plan.windows],
            group=adapter if self.settings.adapter_mode == "merged" else None,
            deadline=job.deadline,
        )
        vectors = combine(plan.spans, [segs for _, segs in plan.windows], outcome.results)
        return EmbedResult(
            vectors=vectors,
            token_counts=_shares(plan.spans, len(plan.document.ids)),
            engine=self._served_by,
            queue_seconds=outcome.queue_seconds,
            inference_seconds=outcome.inference_seconds,
            spans=plan.char_spans,
        )

    def _plan_late(self, job: EmbedJob, text: TextEncoder, adapter: int) -> _LatePlan:
        """Tokenise the document, find each chunk's span, cut the windows (tokenizer thread)."""
        chunks = [x for x in job.inputs if isinstance(x, str)]
        rule = job.chunking
        document = text.encode_document(chunks[0] if rule else " ".join(chunks), job.task)
        n_tokens = len(document.ids)
        cap = self.settings.max_late_chunking_tokens
        if n_tokens > cap:
            raise InvalidRequestError(
                f"the late-chunking document has {n_tokens} tokens (instruction and special tokens included), "
                f"more than this server's limit of {cap}; split it into several documents",
                param="input",
                code="late_chunking_too_long",
            )
        starts = [a for a, _ in document.offsets]
        if rule is None:
            boundaries, offset = [], document.content_start
            for chunk in chunks:
                boundaries.append(offset)
                offset += len(chunk) + 1
            try:
                spans = spans_from_char_starts(starts, boundaries, document.content_start)
            except EmptyChunkError as err:
                raise InvalidRequestError(
                    f"input[{err.index}] contains no token (only whitespace?); every late-chunking input "
                    "must contribute text",
                    param=f"input[{err.index}]",
                    code="empty_chunk",
                ) from None
            char_spans = None
        else:
            spans, char_spans = _cut(rule, document, chunks[0])
        window, overlap = self.settings.late_chunking_windows()
        windows = []
        for w in plan_windows(n_tokens, window, overlap):
            segments = window_segments(spans, w)
            windows.append((_Seq(document.ids[w.start : w.end], adapter, tuple((a, b) for _, a, b in segments)), segments))
        return _LatePlan(document, spans, windows, char_spans)

    # ------------------------------------------------------------------ describing

    def describe(self) -> dict[str, object]:
        where = self._placement
        return {
            "model": self.settings.model,
            "layout": self.info.layout if self.info else None,
            "device": str(where.device) if where else None,
            "dtype": str(where.dtype).removeprefix("torch.") if where else None,
            "numerics": numerics(where.dtype, where.kernels) if where else None,
            "cpu_kernels": where.kernels if where and where.device.type == "cpu" else None,
            "cpu": self._cpu.summary() if self._cpu and where and where.device.type == "cpu" else None,
            "adapter_mode": self.settings.adapter_mode,
            "attention": "packed" if self._packed else "padded",
            "tasks": [t.value for t in self.info.tasks] if self.info else [],
        }

    # ------------------------------------------------------------------ worker side

    def _load_front(self) -> None:
        s = self.settings
        path = resolve_model_dir(
            s.model, revision=s.revision, cache_dir=s.cache_dir, local_files_only=s.local_files_only
        )
        self._name_weights(path, checkpoint_fingerprint)
        info = describe_checkpoint(path, max_input_tokens=s.max_input_tokens)
        device = resolve_device(s.device)
        if self._cpu is None:
            self._cpu = detect_cpu()
        dtype, kernels = resolve_precision(s.dtype, s.cpu_kernels, device, self._cpu, compiled=s.compile != "off")
        self._packed = use_packed(s.attention, device)
        config = build_config(info)
        self.text = TextEncoder(
            load_tokenizer(path),
            instructions=info.instructions,
            max_tokens=info.max_input_tokens,
            vocab_size=config.vocab_size,
            bos_id=config.bos_token_id if config.bos_token_id is not None else 0,
            eos_id=_first(config.eos_token_id, 2),
        )
        self.task_index = {t: i for i, t in enumerate(info.tasks)}
        self.info, self._placement = info, Placement(device, dtype, kernels)

    def _load_model(self) -> None:
        s, info, where = self.settings, self.info, self._placement
        assert info is not None and where is not None and self._cpu is not None
        started = time.perf_counter()
        if s.threads:
            torch.set_num_threads(s.threads)
        if where.device.type == "cpu":
            keep_freed_memory()
        self.encoder = JinaEncoder(
            info, device=where.device, dtype=where.dtype, merged_adapters=s.adapter_mode == "merged",
            compile_mode=None if s.compile == "off" else s.compile, kernels=where.kernels,
        )
        log.info(
            "loaded %s (%s layout, %d adapters, %s/%s, adapters %s) in %.1fs",
            s.model, info.layout, len(info.tasks), where.device, where.dtype, s.adapter_mode,
            time.perf_counter() - started,
        )
        if where.device.type == "cpu":
            log.info(
                "CPU %s: %s linear kernels (cpu_kernels=%s, dtype=%s), numerics %s",
                self._cpu.summary(), where.kernels, s.cpu_kernels, s.dtype, numerics(where.dtype, where.kernels),
            )

    def _model_bytes(self) -> int:
        assert self.encoder is not None
        return module_bytes(self.encoder.model)

    def _warm_up(self) -> None:
        assert self.encoder is not None and self.text is not None
        self._forward([_Seq(self.text.encode(["warm up"], None, truncate=True)[0].ids, -1)])

    def _forward(self, seqs: list[_Seq]) -> list[npt.NDArray[np.float32]]:
        encoder = self.encoder
        if encoder is None:
            raise EngineUnavailableError("engine unloaded", engine=self._name)
        pooled = encoder.pooled_segments(
            [s.ids for s in seqs], [s.adapter for s in seqs], [s.segments for s in seqs], packed=self._packed
        )
        return [p.cpu().numpy().astype(np.float32, copy=False) for p in pooled]


def _check_task(task: Task | None, tasks: Collection[Task]) -> None:
    """A task the loaded checkpoint has no adapter for is the client's error (400)."""
    if task is not None and task not in tasks:
        raise UnsupportedTaskError(f"the loaded checkpoint has no adapter for task {task.value!r}", param="task")


def _shares(spans: list[tuple[int, int]], n_tokens: int) -> tuple[int, ...]:
    """Each chunk's share of the document's tokens, adding up to ``n_tokens`` (overlapping token
    chunks count a shared token once, in the earlier chunk)."""
    starts = [a for a, _ in spans] + [n_tokens]
    return tuple(starts[i + 1] - starts[i] for i in range(len(spans)))


def _cut(rule: ChunkingRule, document: Document, text: str) -> tuple[list[tuple[int, int]], tuple[tuple[int, int], ...]]:
    """Token spans and character ranges (in ``text``) of the chunks ``rule`` cuts ``text`` into."""
    start = document.content_start
    if rule.kind == "sentences":
        ranges = group_sentences(split_sentences(text), rule.size)
        if not ranges:
            raise InvalidRequestError("the text contains no sentence to embed", param="input", code="empty_chunk")
        try:
            spans = spans_from_char_starts([a for a, _ in document.offsets], [start + a for a, _ in ranges], start)
        except EmptyChunkError as err:
            raise InvalidRequestError(
                f"chunk {err.index} contains no token", param="input", code="empty_chunk"
            ) from None
        return spans, tuple(ranges)
    own = [(a - start, b - start) for a, b in document.offsets if a >= start]
    n_instruction = len(document.offsets) - len(own)
    ranges = token_chunks(len(own), rule.size, rule.overlap)
    if not ranges:
        raise InvalidRequestError("the text contains no token to embed", param="input", code="empty_chunk")
    spans = spans_from_token_ranges(ranges, n_instruction, len(own))
    return spans, tuple((own[a][0], own[b - 1][1]) for a, b in ranges)


def _first(value: int | list[int] | None, default: int) -> int:
    if value is None:
        return default
    return value[0] if isinstance(value, list) else value

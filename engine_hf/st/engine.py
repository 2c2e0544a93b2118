"""``SentenceTransformersEngine``: the engine contract over a sentence-transformers checkpoint.

Each input is tokenised as ``prompt + text`` (the prompt the job's task names), queued as one
sequence on the shared scheduler, and run in padded batches through the checkpoint's pipeline
(transformers model -> Pooling -> Dense -> Normalize). A batch may mix tasks: the prompt is in the
ids, and the pooling exclusion of ``include_prompt: false`` is per row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from engine_hf.checkpoint import CheckpointError, checkpoint_fingerprint, resolve_model_dir
from engine_hf.device import resolve_device, resolve_dtype
from engine_hf.inprocess import InProcessEngine, Placement, check_total
from engine_hf.st.layout import DenseSpec, NormalizeSpec, StLayout, read_layout
from engine_hf.st.pipeline import PipelineShape, StPipeline, load_pipeline, plan_pipeline
from engine_hf.st.prompts import PromptTable
from engine_hf.st.settings import SentenceTransformersSettings
from engine_hf.st.text import StText, load_text
from engine_hf.tokenization import Encoded
from gateway.contract import (
    DENSE,
    NULL_OBSERVER,
    EmbedJob,
    EmbedResult,
    EngineCapabilities,
    EngineError,
    EngineObserver,
    EngineUnavailableError,
    UnsupportedTaskError,
    task_of_key,
)

__all__ = ["KIND", "SentenceTransformersEngine"]

log = logging.getLogger(__name__)

KIND = "sentence-transformers"
#: what a hub snapshot needs: configs, weights, tokenizer files (vocab.txt, merges.txt,
#: sentencepiece models), module weights saved by torch; never code
_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*/pytorch_model.bin"]


@dataclass(frozen=True, slots=True)
class _Seq:
    ids: list[int]
    #: leading tokens pooling leaves out (the prompt, with ``include_prompt: false``)
    skip: int


class SentenceTransformersEngine(InProcessEngine[SentenceTransformersSettings, _Seq, npt.NDArray[np.float32]]):
    """A sentence-transformers checkpoint in process (see docs/models.md)."""

    def __init__(
        self,
        settings: SentenceTransformersSettings,
        *,
        name: str = KIND,
        observer: EngineObserver = NULL_OBSERVER,
    ) -> None:
        super().__init__(settings, name=name, observer=observer)
        self.layout: StLayout | None = None
        #: the sizes the checkpoint's files say (known before the weights)
        self.shape: PipelineShape | None = None
        self.text: StText | None = None
        self.prompts: PromptTable | None = None
        #: the weights (where the passes run)
        self.pipeline: StPipeline | None = None

    # ------------------------------------------------------------------ contract

    @property
    def capabilities(self) -> EngineCapabilities:
        # built once loaded (nothing changes after); before that, once from the files (routes are
        # checked against it before start) until a load replaces it
        if self._caps is None:
            self._caps = self._describe()
        return self._caps

    def _load_failure(self, exc: Exception) -> Exception | None:
        if isinstance(exc, (CheckpointError, ValueError, OSError)):
            return EngineError(f"cannot serve {self.settings.model!r}: {exc}", engine=self._name)
        return None

    async def embed(self, job: EmbedJob) -> EmbedResult:
        scheduler, text, prompts, layout = self._scheduler, self.text, self.prompts, self.layout
        if scheduler is None or text is None or prompts is None or layout is None:
            raise self._not_loaded()
        if job.late_chunking or job.token_embeddings or job.outputs != {DENSE}:
            raise UnsupportedTaskError(
                f"engine {self._name} computes dense sentence embeddings only (no late chunking, token "
                "embeddings, sparse or multi-vector outputs)",
                param="input",
            )
        prompt = prompts.prompt(job.task)
        def tokenize() -> tuple[list[Encoded], int]:
            encoded = text.encode(job.inputs, prompt, truncate=job.truncate, direction=job.truncation_direction)
            return encoded, (0 if layout.pooling.include_prompt else text.prompt_length(prompt))

        with scheduler.arriving():
            encoded, skip = await self._off_loop(tokenize)
        check_total(sum(len(e.ids) for e in encoded), job.max_total_tokens)
        outcome = await scheduler.submit(
            [_Seq(e.ids, skip) for e in encoded], [len(e.ids) for e in encoded], deadline=job.deadline
        )
        return EmbedResult(
            vectors=np.stack(outcome.results),
            token_counts=tuple(len(e.ids) for e in encoded),
            engine=self._served_by,
            queue_seconds=outcome.queue_seconds,
            inference_seconds=outcome.inference_seconds,
        )

    # ------------------------------------------------------------------ describing

    def _describe_model(self) -> EngineCapabilities:
        shape, text, s = self.shape, self.text, self.settings
        prompts = self.prompts or self._prompts_before_load()
        return EngineCapabilities(
            tasks=frozenset(task_of_key(t) if t is not None else None for t in prompts.tasks()),
            dimensions=shape.dimensions if shape else self._dimensions_before_load(),
            max_input_tokens=text.max_tokens if text else s.max_input_tokens,
            late_chunking=False,
            token_ids=True,
            token_embeddings=False,
            tokenizer=False,
            outputs=frozenset({DENSE}),
            matryoshka=s.matryoshka,
            vocab_size=shape.vocab_size if shape else None,
            resident_bytes=self._resident,
            identity=self._identity(),
            weights=self._weights(),
        )

    def _layout_before_load(self) -> StLayout | None:
        """A local checkpoint's layout (JSON files only), so routes can be checked before start."""
        if self.layout is not None:
            return self.layout
        path = Path(self.settings.model).expanduser()
        if not path.is_dir():
            return None
        try:
            return read_layout(path)
        except CheckpointError:
            return None  # start() reports it

    def _prompts_before_load(self) -> PromptTable:
        layout, s = self._layout_before_load(), self.settings
        checkpoint = layout.prompts if layout else {"query": "", "document": ""}
        try:
            return PromptTable.merged(
                checkpoint, layout.default_prompt_name if layout else None, s.prompts, s.default_prompt_name
            )
        except ValueError:
            return PromptTable(checkpoint)

    def _dimensions_before_load(self) -> int:
        layout = self._layout_before_load()
        if layout is None:
            return 0
        width = len(layout.pooling.modes) * int(
            layout.pooling.embedding_dimension or layout.transformer.config.get("hidden_size") or 0
        )
        for step in layout.steps:
            if isinstance(step, DenseSpec):
                width = step.out_features
        return layout.truncate_dim or width

    def _weights(self) -> str | None:
        """The checkpoint and the prompts in force: what the vectors of a task mean."""
        if self._weights_id is None or self.prompts is None:
            return None
        table = json.dumps({"prompts": dict(self.prompts.prompts), "default": self.prompts.default_prompt_name},
                           sort_keys=True)
        return f"{self._weights_id}|prompts=sha256:{hashlib.sha256(table.encode()).hexdigest()[:16]}"

    def _identity(self) -> str | None:
        """What moves a bit of the vectors: the checkpoint's content (or hub commit), precision and
        device kind, the prompts in force and the input limit (truncation)."""
        where, text, prompts = self._placement, self.text, self.prompts
        if where is None or text is None or prompts is None or self._weights_id is None:
            return None
        table = json.dumps({"prompts": dict(prompts.prompts), "default": prompts.default_prompt_name}, sort_keys=True)
        return "|".join((
            KIND,
            self._weights_id,
            str(where.dtype).removeprefix("torch."),
            where.device.type,
            f"prompts=sha256:{hashlib.sha256(table.encode()).hexdigest()[:16]}",
            f"max_input_tokens={text.max_tokens}",
        ))

    # ------------------------------------------------------------------ worker side

    def _load_front(self) -> None:
        s = self.settings
        if s.dtype == "int8":
            raise ValueError("dtype int8 is not supported by the sentence-transformers kind; use float32 (exact), "
                             "bfloat16 or float16")
        if s.cpu_kernels == "onednn":
            raise ValueError("cpu_kernels onednn is not supported by the sentence-transformers kind (it runs "
                             "transformers' own modules on torch's kernels); use auto or torch")
        path = resolve_model_dir(
            s.model, revision=s.revision, cache_dir=s.cache_dir, local_files_only=s.local_files_only,
            allow_patterns=_ALLOW_PATTERNS,
        )
        layout = read_layout(path)
        prompts = PromptTable.merged(layout.prompts, layout.default_prompt_name, s.prompts, s.default_prompt_name)
        self._name_weights(path, _fingerprint)
        device = resolve_device(s.device)
        dtype = resolve_dtype(s.dtype, device)
        shape = plan_pipeline(layout)
        spec = layout.transformer
        text = load_text(
            spec.path,
            processor_kwargs=spec.processor_kwargs,
            max_seq_length=spec.max_seq_length,
            do_lower_case=spec.do_lower_case,
            max_position_embeddings=shape.max_position_embeddings,
            max_input_tokens=s.max_input_tokens,
            vocab_size=shape.vocab_size,
        )
        self.layout, self.shape, self.text, self.prompts = layout, shape, text, prompts
        # transformers' own modules on torch's kernels (no int8, no oneDNN)
        self._placement = Placement(device, dtype, "torch")

    def _load_model(self) -> None:
        s, layout, shape, where, text, prompts = (
            self.settings, self.layout, self.shape, self._placement, self.text, self.prompts
        )
        assert layout is not None and shape is not None and where is not None and text is not None and prompts
        started = time.perf_counter()
        if s.threads:
            torch.set_num_threads(s.threads)
        self.pipeline = load_pipeline(layout, shape, device=where.device, dtype=where.dtype)
        log.info(
            "loaded %s (%s pooling%s%s, %d dims, %d tokens, tasks %s) on %s/%s in %.1fs",
            s.model, "+".join(layout.pooling.modes),
            "".join(" + dense" for st in layout.steps if isinstance(st, DenseSpec)),
            " + normalize" if any(isinstance(st, NormalizeSpec) for st in layout.steps) else "",
            shape.dimensions, text.max_tokens, sorted(str(t) for t in prompts.tasks() if t is not None),
            where.device, where.dtype, time.perf_counter() - started,
        )

    def _model_bytes(self) -> int:
        assert self.pipeline is not None
        return self.pipeline.resident_bytes

    def _warm_up(self) -> None:
        assert self.text is not None
        self._forward([_Seq(self.text.encode(["warm up"], "", truncate=True)[0].ids, 0)])

    def _forward(self, seqs: list[_Seq]) -> list[npt.NDArray[np.float32]]:
        pipeline, text = self.pipeline, self.text
        if pipeline is None or text is None:
            raise EngineUnavailableError("engine unloaded", engine=self._name)
        out = pipeline.embed([s.ids for s in seqs], [s.skip for s in seqs], text.pad_id)
        rows = out.numpy().astype(np.float32, copy=False)
        return list(rows)


def _fingerprint(path: Path) -> str:
    """:func:`checkpoint_fingerprint` plus any torch-saved weights (``pytorch_model.bin`` of a
    Dense module or an older model), which that hash does not read."""
    digest = hashlib.sha256(checkpoint_fingerprint(path).encode())
    for f in sorted([*path.glob("*.bin"), *path.glob("*/*.bin")]):
        digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()

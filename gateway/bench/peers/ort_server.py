"""The ONNX Runtime peer: what a CPU user gets from FastEmbed, served over the OpenAI API.

FastEmbed runs jina-embeddings-v3 as ONE ONNX Runtime session over the published ONNX export
(inputs ``input_ids``, ``attention_mask``, ``task_id``; all graph optimisations; intra-op threads =
the cores it is given), one task per call, texts in batches padded to the longest, mean-pooled and
L2-normalised. This server does exactly that to requests arriving over HTTP: a single worker
thread takes the pending inputs in arrival order, up to ``--batch-size`` (32) of the first one's
task, pads them, runs the session, pools. It speaks ``POST /v1/embeddings`` so the bench's load
generator drives it like the gateway (same tokenisation: the checkpoint's tokenizer and task
instructions, so every target sees the same tokens).

Run: ``python -m gateway.bench.peers.ort_server --onnx DIR --model CKPT --port P [--threads N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from gateway.api.openai.protocol import EmbeddingData, EmbeddingRequest, EmbeddingResponse, Usage
from gateway.contract import InvalidRequestError, InputTooLongError, Task
from gateway.serving.postprocess import finalize

__all__ = ["OrtBatcher", "create_app", "main"]

#: FastEmbed's jina-v3 default task when none is given
DEFAULT_TASK = Task.RETRIEVAL_PASSAGE


@dataclass
class _Item:
    ids: list[int]
    task_id: int
    done: Future[npt.NDArray[np.float32]] = field(default_factory=Future)


class OrtBatcher:
    """One ORT session, one worker thread: batches of up to ``batch_size`` inputs of one task, in
    arrival order, padded to the longest (FastEmbed's ``embed(texts, batch_size, task_id)``)."""

    def __init__(self, session: Any, batch_size: int = 32) -> None:
        self.session, self.batch_size = session, batch_size
        self._pending: deque[_Item] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ort-worker", daemon=True)
        self._thread.start()

    def submit(self, seqs: Sequence[list[int]], task_id: int) -> list[Future[npt.NDArray[np.float32]]]:
        items = [_Item(list(s), task_id) for s in seqs]
        with self._cv:
            self._pending.extend(items)
            self._cv.notify()
        return [i.done for i in items]

    def _next_batch(self) -> list[_Item] | None:
        with self._cv:
            while not self._pending and not self._closed:
                self._cv.wait()
            if self._closed:
                return None
            task = self._pending[0].task_id
            batch, rest = [], deque[_Item]()
            while self._pending and len(batch) < self.batch_size:
                item = self._pending.popleft()
                (batch if item.task_id == task else rest).append(item)
            rest.extend(self._pending)
            self._pending = rest
            return batch

    def _run(self) -> None:
        from engine_hf.tools.onnx_export import pooled

        while (batch := self._next_batch()) is not None:
            try:
                vectors = pooled(self.session, [i.ids for i in batch], batch[0].task_id)
            except Exception as exc:  # every waiter gets an answer
                for item in batch:
                    item.done.set_exception(exc)
                continue
            for item, v in zip(batch, vectors, strict=True):
                item.done.set_result(v)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=status)


def create_app(batcher: OrtBatcher, text: Any, task_index: dict[Task, int], served_name: str) -> FastAPI:
    """``POST /v1/embeddings`` (OpenAI shape, plus Jina's ``task``) and ``GET /health``."""
    app = FastAPI(title="ONNX Runtime peer (FastEmbed-style)")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/embeddings", response_model=EmbeddingResponse)
    async def embeddings(body: EmbeddingRequest) -> Any:
        try:
            spec = body.to_spec()
            task = spec.task if spec.task_given else DEFAULT_TASK
            if task is None or task not in task_index:
                return _error(400, f"task {task!r}: the ONNX export needs one of {sorted(t.value for t in task_index)}")
            encoded = text.encode(spec.inputs, task, truncate=spec.truncate)
        except (InvalidRequestError, InputTooLongError) as exc:
            return _error(400, str(exc))
        futures = batcher.submit([e.ids for e in encoded], task_index[task])
        rows = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        vectors = finalize(np.stack(rows), spec.dimensions, spec.normalized)
        tokens = sum(len(e.ids) for e in encoded)
        return EmbeddingResponse(
            data=[EmbeddingData(index=i, embedding=v.tolist()) for i, v in enumerate(vectors)],
            model=body.model or served_name, usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
        )

    return app


def build(onnx_dir: Path, model: str, threads: int | None, batch_size: int, served_name: str) -> FastAPI:
    """The app over a session of ``onnx_dir`` and the tokenizer of checkpoint ``model``."""
    from engine_hf.checkpoint import describe_checkpoint, resolve_model_dir
    from engine_hf.model import build_config
    from engine_hf.tokenization import TextEncoder, load_tokenizer
    from engine_hf.tools.onnx_export import ort_session

    path = resolve_model_dir(model)
    info = describe_checkpoint(path)
    text = TextEncoder(load_tokenizer(path), instructions=info.instructions, max_tokens=info.max_input_tokens,
                       vocab_size=build_config(info).vocab_size)
    batcher = OrtBatcher(ort_session(onnx_dir, threads), batch_size)
    return create_app(batcher, text, {t: i for i, t in enumerate(info.tasks)}, served_name)


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(prog="python -m gateway.bench.peers.ort_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", required=True, type=Path, help="folder of the export (engine_hf.tools.onnx_export)")
    p.add_argument("--model", required=True, help="the checkpoint it was exported from (tokenizer, instructions)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, help="ORT intra-/inter-op threads (default: ORT's, all cores)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--served-name", default="jina-embeddings-v3")
    args = p.parse_args()
    app = build(args.onnx, args.model, args.threads, args.batch_size, args.served_name)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

"""The Ray Data UDF of ``embed --ray``: one HF engine per actor of the pool.

A class, so each actor loads the model once (Ray Data calls ``__call__`` per batch). A batch of
rows becomes ONE job, which the engine's scheduler cuts into forward passes by its token budget
(``engines.hf.max_batch_tokens``), exactly as in the single-process ``embed --local``; vectors are
post-processed by the same :func:`gateway.serving.postprocess.finalize`. A row the engine refuses (too long
without ``--truncate``) is returned with its reason in ``error`` instead of failing the dataset, so
the driver can report it by its line like the other paths.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.contract import EmbedGatewayError, EmbedJob, InputTooLongError, RetryableError, parse_task

__all__ = ["HFEncoderActor"]


class HFEncoderActor:
    """``map_batches`` UDF: ``{"text", ...}`` in, the same columns plus ``vector``, ``tokens`` and ``error`` out."""

    def __init__(self, settings: dict[str, Any], task: str, dimensions: int | None, truncate: bool) -> None:
        from engine_hf import HFEngine
        from engine_hf.settings import HFEngineSettings
        from gateway.contract import InvalidRequestError
        from gateway.serving.service import check_dimensions

        self.loop = asyncio.new_event_loop()
        # the passes in this Ray worker's own process (no second process per actor)
        parsed = HFEngineSettings.model_validate(settings).model_copy(update={"own_process": False})
        self.engine = HFEngine(parsed, name="hf-ray-data")
        self.loop.run_until_complete(self.engine.start())
        width = self.engine.capabilities.dimensions
        try:
            check_dimensions(dimensions, width)
        except InvalidRequestError as exc:  # the same message as --local's
            raise ValueError(f"--{exc.message} for this model") from None
        self.task, self.truncate = parse_task(task), truncate
        self.dims = dimensions or width

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        from gateway.serving.postprocess import finalize

        texts = [str(t) for t in batch["text"]]
        n = len(texts)
        vectors = np.zeros((n, self.dims), dtype=np.float32)
        tokens = np.zeros(n, dtype=np.int64)
        errors = [""] * n
        todo = list(range(n))
        while todo:
            job = EmbedJob(inputs=[texts[i] for i in todo], task=self.task, truncate=self.truncate)
            try:
                result = self.loop.run_until_complete(self.engine.embed(job))
            except InputTooLongError as err:
                errors[todo[err.index]] = f"rejected by the embedder: {err.message}"
                del todo[err.index]
                continue
            except RetryableError as err:  # the engine's own queue is full: only other batches of this actor
                self.loop.run_until_complete(asyncio.sleep(err.retry_after or 0.5))
                continue
            except EmbedGatewayError as err:
                for i in todo:
                    errors[i] = f"rejected by the embedder: {err.message}"
                break
            vectors[todo] = finalize(result.vectors, self.dims, True)
            tokens[todo] = result.token_counts
            todo = []
        return {**batch, "vector": vectors, "tokens": tokens, "error": np.array(errors, dtype=object)}

    def __del__(self) -> None:
        engine, loop = getattr(self, "engine", None), getattr(self, "loop", None)
        if engine is not None and loop is not None and not loop.is_closed():
            loop.run_until_complete(engine.aclose())
            loop.close()

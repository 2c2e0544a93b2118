"""Where vectors come from: a running gateway over HTTP, or the HF engine in this process.

Both give the same vectors (the gateway post-processes with :func:`gateway.postprocess.finalize`,
and so does :class:`LocalEmbedder`) and the same failure shape: :class:`BatchRejected` with the
index of the input at fault when one is known, so the runner can name the row's line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from gateway.client import AsyncGatewayClient, Embeddings, GatewayRequestError, RetryPolicy, RetryStats
from gateway.contract import EmbedGatewayError, EmbedJob, InputTooLongError, RetryableError, parse_task

__all__ = ["BatchRejected", "Embedder", "HttpEmbedder", "LocalEmbedder"]


class BatchRejected(Exception):
    """The batch cannot be embedded; ``index`` is the input at fault when the server said which."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.index = index


class Embedder(Protocol):
    stats: RetryStats

    async def start(self) -> None: ...

    async def embed(self, texts: Sequence[str]) -> Embeddings: ...

    async def aclose(self) -> None: ...


class HttpEmbedder:
    """Calls ``POST /v1/embeddings`` of a running gateway; 429/503 are waited out (Retry-After)."""

    def __init__(
        self,
        url: str,
        *,
        task: str,
        dimensions: int | None,
        model: str | None = None,
        truncate: bool = False,
        api_key: str | None = None,
        timeout: float = 120.0,
        policy: RetryPolicy | None = None,
    ) -> None:
        parse_task(task)
        self.task, self.dimensions, self.model, self.truncate = task, dimensions, model, truncate
        self.client = AsyncGatewayClient(url, api_key=api_key, timeout=timeout, policy=policy)
        self.stats = self.client.stats

    async def start(self) -> None:
        return None

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        try:
            return await self.client.embed(
                texts, model=self.model, task=self.task, dimensions=self.dimensions, truncate=self.truncate
            )
        except GatewayRequestError as err:
            raise BatchRejected(err.message, err.input_index) from err

    async def aclose(self) -> None:
        await self.client.aclose()


class LocalEmbedder:
    """The HF engine in-process (needs the ``hf`` extra); no server, same vectors."""

    def __init__(
        self,
        model: str,
        *,
        task: str,
        dimensions: int | None,
        truncate: bool = False,
        device: str = "auto",
        dtype: str = "auto",
        threads: int | None = None,
        local_files_only: bool = False,
    ) -> None:
        from gateway.config import HFEngineSettings

        self.task = parse_task(task)
        self.dimensions, self.truncate = dimensions, truncate
        self.settings = HFEngineSettings(
            model=model, device=device, dtype=dtype, threads=threads,  # type: ignore[arg-type]
            local_files_only=local_files_only,
        )
        self.stats = RetryStats()
        self.engine = None

    async def start(self) -> None:
        try:
            from engine_hf import HFEngine
        except ImportError as exc:
            raise RuntimeError("--local needs the hf extra: pip install 'embed-gateway[hf]'") from exc
        engine = HFEngine(self.settings)
        await engine.start()
        width = engine.capabilities.dimensions
        if self.dimensions is not None and not 1 <= self.dimensions <= width:
            await engine.aclose()
            raise ValueError(f"--dimensions must be between 1 and {width} for this model")
        self.engine = engine

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        from gateway.postprocess import finalize

        if self.engine is None:
            raise RuntimeError("LocalEmbedder.start() was not awaited")
        job = EmbedJob(inputs=list(texts), task=self.task, truncate=self.truncate)
        while True:
            try:
                result = await self.engine.embed(job)
                break
            except InputTooLongError as err:
                raise BatchRejected(err.message, err.index) from err
            except RetryableError as err:  # our own queue is full: wait like an HTTP client would
                wait = err.retry_after or 0.5
                self.stats.record(None, wait)
                await asyncio.sleep(wait)
            except EmbedGatewayError as err:
                raise BatchRejected(err.message) from err
        return Embeddings(vectors=finalize(result.vectors, self.dimensions, True), total_tokens=sum(result.token_counts))

    async def aclose(self) -> None:
        if self.engine is not None:
            await self.engine.aclose()

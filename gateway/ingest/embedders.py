"""Where vectors come from: a running gateway over HTTP, or the HF engine in this process.

Both give the same vectors (:class:`LocalEmbedder` runs the gateway's own service in-process) and the same failure shape: :class:`BatchRejected` with the
index of the input at fault when one is known, so the runner can name the row's line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from gateway.client import AsyncGatewayClient, Embeddings, GatewayRequestError, RetryPolicy, RetryStats
from gateway.config import Settings, load_settings
from gateway.contract import EmbedGatewayError, InputTooLongError, InvalidRequestError, RetryableError, parse_task
from gateway.engines import build_engine
from gateway.ingest.stamp import StampMismatchError
from gateway.obs.metrics import GatewayMetrics
from gateway.pool import Pool
from gateway.serving.service import EmbeddingService, check_dimensions
from gateway.serving.spec import EmbeddingSpec

__all__ = ["BatchRejected", "Embedder", "HttpEmbedder", "LocalEmbedder", "SparseUnsupportedError"]


class BatchRejected(Exception):
    """The batch cannot be embedded; ``index`` is the input at fault when the server said which."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.index = index


class SparseUnsupportedError(ValueError):
    """Sparse vectors were asked of a model or store that has none (the message says what it offers)."""


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
        sparse: bool = False,
    ) -> None:
        parse_task(task)
        self.task, self.dimensions, self.model, self.truncate = task, dimensions, model, truncate
        #: ask for each text's sparse vector too (``return_sparse``): ``Embeddings.sparse``
        self.sparse = sparse
        self.client = AsyncGatewayClient(url, api_key=api_key, timeout=timeout, policy=policy)
        self.stats = self.client.stats

    async def start(self) -> None:
        return None

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        try:
            return await self.client.embed(
                texts, model=self.model, task=self.task, dimensions=self.dimensions, truncate=self.truncate,
                sparse=self.sparse,
            )
        except GatewayRequestError as err:
            if err.code == "space_mismatch":  # the gateway now answers in another space: stop, write nothing
                raise StampMismatchError(err.message) from err
            if err.param == "return_sparse":  # the model has no sparse output: no batch will do
                raise SparseUnsupportedError(err.message) from err
            raise BatchRejected(err.message, err.input_index) from err

    async def aclose(self) -> None:
        await self.client.aclose()


class LocalEmbedder:
    """The HF engine in-process (needs the ``hf`` extra), served by the gateway's own service
    (:class:`gateway.serving.service.EmbeddingService` over a one-engine pool): no server, and the
    same limits, alias rules and post-processing as a gateway, so the same vectors."""

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
        self.task = parse_task(task)
        self.dimensions, self.truncate = dimensions, truncate
        self.engine_settings = {
            "model": model, "device": device, "dtype": dtype, "threads": threads, "local_files_only": local_files_only,
        }
        self.stats = RetryStats()
        self._pool: Pool | None = None
        self._service: EmbeddingService | None = None

    def _settings(self) -> Settings:
        """One HF engine; no per-request limits (the ingest command sizes its batches) and no
        retries (a full queue is waited out below, like an HTTP client would)."""
        return load_settings(
            engines={"hf": {"enabled": True, **self.engine_settings}, "vllm": {"enabled": False}},
            limits={"max_inputs_per_request": 2**31 - 1, "max_tokens_per_request": None, "request_timeout": None},
            retry={"attempts": 1},
        )

    async def start(self) -> None:
        try:
            import engine_hf  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("--local needs the hf extra: pip install 'embed-gateway[hf]'") from exc
        metrics = GatewayMetrics()
        pool = Pool(metrics, builder=build_engine)
        await pool.open(self._settings())
        width = max(m.capabilities.dimensions for m in pool.current.members.values())
        try:
            check_dimensions(self.dimensions, width)
        except InvalidRequestError as exc:
            await pool.aclose()
            raise ValueError(f"--{exc.message} for this model") from None
        self._pool, self._service = pool, EmbeddingService(pool, metrics)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        if self._service is None:
            raise RuntimeError("LocalEmbedder.start() was not awaited")
        spec = EmbeddingSpec(
            model=None, inputs=tuple(texts), has_token_ids=False, task=self.task, task_given=True,
            dimensions=self.dimensions, normalized=True, truncate=self.truncate,
        )
        while True:
            try:
                outcome = await self._service.embed(spec)
                break
            except InputTooLongError as err:
                raise BatchRejected(err.message, err.index) from err
            except RetryableError as err:  # our own queue is full: wait like an HTTP client would
                wait = err.retry_after or 0.5
                self.stats.record(None, wait)
                await asyncio.sleep(wait)
            except EmbedGatewayError as err:
                raise BatchRejected(err.message) from err
        return Embeddings(vectors=outcome.vectors, total_tokens=sum(outcome.token_counts), space=outcome.space)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

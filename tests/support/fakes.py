"""Fakes that are real implementations of the engine contract, with scripted faults.

For faults a real engine cannot be made to produce on demand (a wedged engine, an overloaded one,
one that never loads). Vectors are deterministic functions of the text so results can be checked.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

import numpy as np

from gateway.contract import (
    TASKS,
    EmbedGatewayError,
    EmbedJob,
    EmbedResult,
    EngineCapabilities,
    EngineUnavailableError,
    Health,
    Task,
)


def fake_vector(text: str, task: Task | None, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(f"{task}|{text}".encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


class FakeEngine:
    def __init__(
        self,
        name: str = "fake",
        *,
        tasks: frozenset[Task | None] | None = None,
        dimensions: int = 64,
        healthy: bool = True,
        fail_with: Callable[[EmbedJob], EmbedGatewayError | None] | None = None,
        delay: float = 0.0,
        start_error: Exception | None = None,
        late_chunking: bool = False,
        identity: str | None = None,
    ) -> None:
        self._name = name
        self._tasks = tasks if tasks is not None else frozenset([*TASKS, None])
        self.dimensions = dimensions
        self.healthy = healthy
        self.fail_with = fail_with
        self.delay = delay
        self.start_error = start_error
        self.late_chunking = late_chunking
        #: the numeric identity it claims (None, as default: the cache never keeps its vectors)
        self.identity = identity
        self.calls: list[EmbedJob] = []
        #: how many times check_health ran (readiness must not run it per request)
        self.health_checks = 0
        self.started = False
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            tasks=self._tasks, dimensions=self.dimensions, max_input_tokens=8192, late_chunking=self.late_chunking,
            identity=self.identity,
        )

    async def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error
        self.started = True

    async def embed(self, job: EmbedJob) -> EmbedResult:
        self.calls.append(job)
        if self.start_error is not None:  # like a real engine whose start failed: it cannot answer
            raise EngineUnavailableError(f"{self._name} did not start", engine=self._name)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with is not None and (err := self.fail_with(job)) is not None:
            raise err
        texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in job.inputs]
        vectors = np.stack([fake_vector(t, job.task, self.dimensions) for t in texts])
        return EmbedResult(vectors=vectors, token_counts=tuple(len(t.split()) + 2 for t in texts), engine=self._name)

    async def check_health(self) -> Health:
        self.health_checks += 1
        return Health(self.healthy and self.started, "ok" if self.healthy else "scripted unhealthy")

    async def aclose(self) -> None:
        self.closed = True


class HeldEngine(FakeEngine):
    """Holds every job until ``release`` is set: requests pile up in flight (``entered`` counts them)."""

    def __init__(self, name: str = "held") -> None:
        super().__init__(name)
        self.release = asyncio.Event()
        self.entered = 0

    async def embed(self, job):  # type: ignore[no-untyped-def]
        self.entered += 1
        await self.release.wait()
        return await super().embed(job)

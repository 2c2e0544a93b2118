"""An engine wrapper that records every job it serves (which task, which texts), then delegates.

A real implementation of the contract around a real engine: tests use it to see what reached the
engine through Mem0 and the gateway (e.g. that a search was embedded with ``retrieval.query``).
"""

from __future__ import annotations

from gateway.contract import EmbedJob, EmbedResult, Engine, EngineCapabilities, Health, Task


class RecordingEngine:
    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.jobs: list[EmbedJob] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def capabilities(self) -> EngineCapabilities:
        return self.inner.capabilities

    async def start(self) -> None:
        await self.inner.start()

    async def embed(self, job: EmbedJob) -> EmbedResult:
        self.jobs.append(job)
        return await self.inner.embed(job)

    async def check_health(self) -> Health:
        return await self.inner.check_health()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def tasks_seen(self) -> list[Task | None]:
        return [job.task for job in self.jobs]

    def clear(self) -> None:
        self.jobs.clear()

"""The pool's two promises: a snapshot never changes, and a request counts only on the engine it calls.

Real pool, real service, real metrics registry; the engines are contract fakes (two engines that
serve every task, so both are in every route and only the plan decides which one is called).
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from gateway.config import load_settings
from gateway.contract import EngineUnavailableError, Task
from gateway.obs.metrics import GatewayMetrics
from gateway.pool import Pool
from gateway.serving.service import EmbeddingService
from gateway.serving.spec import EmbeddingSpec
from tests.support.fakes import FakeEngine, HeldEngine


def spec(task: Task | None = Task.TEXT_MATCHING) -> EmbeddingSpec:
    return EmbeddingSpec(model=None, inputs=("x",), has_token_ids=False, task=task, task_given=True,
                         dimensions=None, normalized=True, truncate=False)


def fields_of(obj: object) -> tuple[object, ...]:
    """A dataclass's field values, shallow (the engines themselves compared by identity)."""
    return tuple(getattr(obj, f.name) for f in dataclasses.fields(obj))  # type: ignore[arg-type]


def settings():  # type: ignore[no-untyped-def]
    # the parity guard off: the fakes are not the real model; both engines serve every task
    return load_settings(parity={"enabled": False}, routes={"text-matching": ["first", "second"]})


def test_a_snapshot_does_not_change_when_its_engines_do() -> None:
    async def go() -> None:
        pool = Pool(GatewayMetrics(), builder=lambda n, s: FakeEngine(n))
        await pool.open(settings(), {"first": FakeEngine("first"), "second": FakeEngine("second")})
        try:
            snap = pool.current
            before = {n: fields_of(m) for n, m in snap.members.items()}
            routes = snap.routes
            first = snap.members["first"]

            # everything that happens to a running engine: failures, a trip, requests on it
            pool.supervisor.record_failure(first, EngineUnavailableError("down", engine="first"))
            pool.supervisor.trip(first, "health: scripted")
            with pool.acquire() as held:
                assert held is snap
                with pool.supervisor.serving(first):
                    pass

            assert pool.supervisor.state(first).breaker.is_open  # the live state changed ...
            assert {n: fields_of(m) for n, m in snap.members.items()} == before  # ... the snapshot did not
            assert snap.routes == routes
            assert pool.supervisor.plan(snap, Task.TEXT_MATCHING) == ["second"]  # the router reads the live state

            # and nothing can change it from outside
            with pytest.raises(dataclasses.FrozenInstanceError):
                snap.generation = 7  # type: ignore[misc]
            with pytest.raises(dataclasses.FrozenInstanceError):
                first.start_error = "x"  # type: ignore[misc]
            with pytest.raises(TypeError):
                snap.members["third"] = first  # type: ignore[index]
            snap.routes["text-matching"].append("third")  # a copy: the snapshot's table is untouched
            assert snap.routes == routes and snap.route(Task.TEXT_MATCHING) == ("first", "second")
        finally:
            await pool.aclose()

    asyncio.run(go())


def test_a_request_counts_only_on_the_engine_it_calls() -> None:
    async def go() -> None:
        metrics = GatewayMetrics()
        first, second = HeldEngine("first"), FakeEngine("second")
        pool = Pool(metrics, builder=lambda n, s: FakeEngine(n))
        await pool.open(settings(), {"first": first, "second": second})
        metrics.watch(pool.supervisor, lambda: pool.current)
        service = EmbeddingService(pool, metrics)
        try:
            snap = pool.current
            request = asyncio.create_task(service.embed(spec()))
            while not first.entered:
                await asyncio.sleep(0.005)

            state = pool.supervisor.state
            assert state(snap.members["first"]).in_flight == 1
            assert state(snap.members["second"]).in_flight == 0  # in the snapshot, not called
            assert metrics.value("embed_gateway_engine_requests", engine="first") == 1
            assert metrics.value("embed_gateway_engine_requests", engine="second") == 0
            assert pool.held(before=snap.generation + 1) == 1  # the snapshot itself is held (drain)

            first.release.set()
            await request
            assert state(snap.members["first"]).in_flight == 0
            assert pool.held(before=snap.generation + 1) == 0
        finally:
            await pool.aclose()

    asyncio.run(go())


"""The serving process's heap: frozen once started (full collections skip what start-up built), and
thawed, collected and frozen again when a reload lets go of objects."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway.config import load_settings
from gateway.lifecycle import freeze_heap, refreeze_heap
from gateway.obs.metrics import GatewayMetrics
from gateway.pool import Pool
from tests.support.fakes import FakeEngine


@pytest.fixture
def thawed() -> Iterator[None]:
    """The test process's heap is never left frozen."""
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_refreezing_a_heap_never_frozen_does_nothing(thawed: None) -> None:
    refreeze_heap()
    assert gc.get_freeze_count() == 0


def test_a_frozen_cycle_is_kept_until_the_heap_is_refrozen(thawed: None) -> None:
    node = Node()
    alive = weakref.ref(node)
    assert freeze_heap() > 0 and alive() is not None
    del node
    gc.collect()
    assert alive() is not None  # frozen: the collector no longer looks at it
    refreeze_heap()
    assert alive() is None and gc.get_freeze_count() > 0  # collected, and the rest frozen again


def test_a_reload_reclaims_after_the_swap_and_again_once_a_dropped_engine_is_closed() -> None:
    calls: list[int] = []
    engines: dict[str, FakeEngine] = {}

    def build(name: str, settings: object) -> FakeEngine:
        engines[name] = FakeEngine(name)
        return engines[name]

    def settings(vllm: bool):  # type: ignore[no-untyped-def]
        return load_settings(parity={"enabled": False},
                             engines={"vllm": {"enabled": vllm, "url": "http://127.0.0.1:9"}})

    async def go() -> None:
        pool = Pool(GatewayMetrics(), builder=build, reclaim=lambda: calls.append(1))
        await pool.open(settings(False))
        try:
            assert calls == []  # start-up is the server's to freeze, not the pool's
            await pool.reload(settings(True))
            assert len(calls) == 1 and "vllm" in pool.current.members  # nothing dropped: one reclaim
            await pool.reload(settings(False))
            assert len(calls) == 2  # the old configuration, right after the swap
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while len(calls) < 3:  # the dropped engine, once drained and closed
                assert loop.time() < deadline, "the retired engine was never reclaimed"
                await asyncio.sleep(0.01)
            assert engines["vllm"].closed
        finally:
            await pool.aclose()

    asyncio.run(go())

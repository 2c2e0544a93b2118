"""The coalescer: at idle a job goes alone and at once; what waits while every call is busy goes
together in the next call, each job getting its own rows back; a job given up is never sent; a
failed call fails only the jobs it carried."""

from __future__ import annotations

import asyncio
from collections import deque

import numpy as np
import numpy.typing as npt
import pytest

from engine_vllm.coalesce import Coalescer, Waiting, take_batch


class Upstream:
    """A real implementation of the call the coalescer makes: each input ``[k]`` becomes the row
    ``[k, k]``; calls wait for :meth:`release` when ``gated``; records what each call carried."""

    def __init__(self, *, gated: bool = False, fail_below: int = 0) -> None:
        self.calls: list[tuple[list[list[int]], float | None]] = []
        self.gated = gated
        #: a call carrying an input below this fails
        self.fail_below = fail_below
        self._gate = asyncio.Event()

    def release(self) -> None:
        self._gate.set()

    async def send(self, items: list[list[int]], deadline: float | None) -> npt.NDArray[np.float32]:
        self.calls.append((items, deadline))
        if self.gated:
            await self._gate.wait()
        if any(x[0] < self.fail_below for x in items):
            raise RuntimeError("upstream down")
        return np.array([[x[0], x[0]] for x in items], dtype=np.float32)


def rows(result: npt.NDArray[np.float32]) -> list[int]:
    return [int(r[0]) for r in result]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def one_call_busy(*, max_inputs: int = 64, fail_below: int = 0, deadline: float | None = None,
                        ) -> tuple[Upstream, Coalescer[list[int]], asyncio.Future[npt.NDArray[np.float32]]]:
    """A coalescer with one call, held by the job ``[[0]]`` (the upstream gated): what comes next waits."""
    up = Upstream(gated=True, fail_below=fail_below)
    co: Coalescer[list[int]] = Coalescer(up.send, max_calls=1, max_inputs=max_inputs)
    first = asyncio.ensure_future(co.embed([[0]], deadline))
    await settle()
    return up, co, first


def test_an_idle_job_goes_alone_at_once() -> None:
    async def go() -> None:
        up = Upstream()
        co = Coalescer(up.send, max_calls=2, max_inputs=8)
        assert rows(await co.embed([[1], [2]], 5.0)) == [1, 2]
        assert up.calls == [([[1], [2]], 5.0)] and co.calls == 1 and co.in_flight == 0

    asyncio.run(go())


def test_jobs_that_wait_go_together_and_get_their_own_rows() -> None:
    async def go() -> None:
        up, co, first = await one_call_busy()
        waiting = [asyncio.ensure_future(co.embed([[10 * k + j] for j in range(k)], float(k))) for k in range(1, 5)]
        await settle()
        assert len(up.calls) == 1 and co.waiting == 4  # every call busy: they wait
        up.release()
        assert rows(await first) == [0]
        got = [rows(r) for r in await asyncio.gather(*waiting)]
        assert got == [[10 * k + j for j in range(k)] for k in range(1, 5)]
        assert len(up.calls) == 2  # the four waiting jobs in ONE call, in arrival order
        items, deadline = up.calls[1]
        assert [x[0] for x in items] == [10, 20, 21, 30, 31, 32, 40, 41, 42, 43] and deadline == 4.0
        assert co.calls == 2 and co.jobs == 5 and co.in_flight == 0

    asyncio.run(go())


def test_a_call_carries_at_most_max_inputs_but_a_large_job_goes_whole() -> None:
    pending: deque[Waiting[list[int]]] = deque()

    async def go() -> None:
        loop = asyncio.get_running_loop()
        for n in (3, 3, 3, 10):
            pending.append(Waiting([[i] for i in range(n)], None, loop.create_future()))
        assert [len(w.items) for w in take_batch(pending, 7)] == [3, 3]
        assert [len(w.items) for w in take_batch(pending, 7)] == [3]
        assert [len(w.items) for w in take_batch(pending, 7)] == [10]  # alone, over the cap
        assert take_batch(pending, 7) == []

    asyncio.run(go())


def test_the_latest_deadline_and_none_wins() -> None:
    async def go() -> None:
        up, co, first = await one_call_busy(deadline=1.0)
        others = [asyncio.ensure_future(co.embed([[k]], d)) for k, d in ((1, 2.0), (2, None), (3, 3.0))]
        await settle()
        up.release()
        await asyncio.gather(first, *others)
        assert up.calls[1][1] is None  # a job without a deadline: the call has none

    asyncio.run(go())


def test_a_job_given_up_while_waiting_is_never_sent() -> None:
    async def go() -> None:
        up, co, first = await one_call_busy()
        gone = asyncio.ensure_future(co.embed([[1]], None))
        kept = asyncio.ensure_future(co.embed([[2]], None))
        await settle()
        gone.cancel()
        await settle()
        up.release()
        await first
        assert rows(await kept) == [2]
        assert [x[0] for x in up.calls[1][0]] == [2]
        with pytest.raises(asyncio.CancelledError):
            await gone

    asyncio.run(go())


def test_a_failed_call_fails_only_its_jobs_and_the_next_call_goes_out() -> None:
    async def go() -> None:
        up, co, first = await one_call_busy(max_inputs=2, fail_below=3)
        a = asyncio.ensure_future(co.embed([[1]], None))
        b = asyncio.ensure_future(co.embed([[2]], None))
        c = asyncio.ensure_future(co.embed([[3]], None))  # over max_inputs: the call after
        await settle()
        up.release()
        for fut in (first, a, b):
            with pytest.raises(RuntimeError, match="upstream down"):
                await fut
        assert rows(await c) == [3]
        assert [[x[0] for x in items] for items, _ in up.calls] == [[0], [1, 2], [3]]
        assert co.in_flight == 0 and co.waiting == 0

    asyncio.run(go())


def test_close_cancels_what_is_in_flight_and_what_waits() -> None:
    async def go() -> None:
        up, co, first = await one_call_busy()
        second = asyncio.ensure_future(co.embed([[1]], None))
        await settle()
        await co.aclose()
        first.cancel()
        for fut in (first, second):
            with pytest.raises(asyncio.CancelledError):
                await fut

    asyncio.run(go())


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        Coalescer(Upstream().send, max_calls=0, max_inputs=1)


def test_a_call_taken_for_the_callers_own_use_counts_until_released() -> None:
    async def go() -> None:
        up = Upstream()
        co = Coalescer(up.send, max_calls=1, max_inputs=8)
        assert co.try_acquire() and co.in_flight == 1
        assert not co.try_acquire()  # the only call is taken
        waiting = asyncio.ensure_future(co.embed([[7]], None))
        await settle()
        assert co.waiting == 1 and up.calls == []
        co.release()  # the caller's own call is done: the waiting job goes
        assert rows(await waiting) == [7] and co.in_flight == 0 and co.calls == 2

    asyncio.run(go())


def test_without_sharing_every_job_goes_at_once_on_a_call_of_its_own() -> None:
    async def go() -> None:
        up, co, first = await one_call_busy()
        waiting = [asyncio.ensure_future(co.embed([[k]], None)) for k in range(1, 3)]
        await settle()
        assert len(up.calls) == 1 and co.waiting == 2  # sharing: they wait for the busy call
        co.sharing = False
        more = [asyncio.ensure_future(co.embed([[k]], None)) for k in range(3, 6)]
        await settle()
        assert co.in_flight == 6 and co.waiting == 0  # the next job pumps those waiting, each alone
        up.release()
        assert rows(await first) == [0]
        assert [rows(r) for r in await asyncio.gather(*waiting, *more)] == [[1], [2], [3], [4], [5]]
        assert sorted(x[0][0] for x, _ in up.calls) == [0, 1, 2, 3, 4, 5]
        assert all(len(items) == 1 for items, _ in up.calls)  # each job alone, none shared
        assert co.calls == co.jobs == 6 and co.in_flight == 0

    asyncio.run(go())

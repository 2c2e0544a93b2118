"""The async shell: batching of concurrent jobs, and every waiter always resolved."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from engine_hf.batching import BatchLimits
from engine_hf.scheduler import Scheduler
from gateway.contract import EngineError, EngineOverloadedError, EngineTimeoutError, EngineUnavailableError


def echo_forward(calls: list[list[int]], gate: threading.Event | None = None):  # type: ignore[no-untyped-def]
    def forward(payloads: list[int]) -> np.ndarray:
        if gate is not None:
            gate.wait(5)
        calls.append(list(payloads))
        return np.array([[float(p), 1.0] for p in payloads], dtype=np.float32)

    return forward


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


async def held_in_a_batch(gate: threading.Event, max_queued_tokens: int) -> tuple[Scheduler[Any], asyncio.Task[Any]]:
    """A started scheduler whose worker is busy with one job's batch until ``gate`` is set."""
    s = Scheduler(echo_forward([], gate), BatchLimits(), name="t", max_queued_tokens=max_queued_tokens)
    s.start()
    running = asyncio.create_task(s.submit([0], [10]))
    await asyncio.sleep(0.05)
    return s, running


def test_concurrent_jobs_are_batched_and_results_routed_back() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()

    async def main() -> None:
        s = Scheduler(echo_forward(calls, gate), BatchLimits(), name="t", max_queued_tokens=10_000)
        s.start()
        first = asyncio.create_task(s.submit([0], [5]))
        await asyncio.sleep(0.05)  # the first batch is now running (blocked on the gate)
        rest = [asyncio.create_task(s.submit([i, i + 100], [5, 5])) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        gate.set()
        out0 = await first
        outs = await asyncio.gather(*rest)
        assert np.stack(out0.results)[:, 0].tolist() == [0.0]
        for i, o in enumerate(outs, start=1):
            assert np.stack(o.results)[:, 0].tolist() == [i, i + 100]
            assert o.queue_seconds >= 0 and o.inference_seconds > 0
        await s.aclose()

    run(main())
    assert len(calls) == 2  # one for the first job, ONE for the five that queued behind it


def test_failed_batch_fails_every_job_in_it_and_the_loop_survives() -> None:
    state = {"fail": True}

    def forward(payloads: list[int]) -> np.ndarray:
        if state["fail"]:
            state["fail"] = False
            raise RuntimeError("boom")
        return np.zeros((len(payloads), 2), dtype=np.float32)

    async def main() -> None:
        s = Scheduler(forward, BatchLimits(), name="t", max_queued_tokens=10_000)
        s.start()
        with pytest.raises(EngineError):
            await s.submit([1, 2], [3, 3])
        out = await s.submit([3], [3])
        assert np.stack(out.results).shape == (1, 2)
        await s.aclose()

    run(main())


def test_cancelled_job_is_withdrawn_from_the_queue() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()

    async def main() -> None:
        s = Scheduler(echo_forward(calls, gate), BatchLimits(), name="t", max_queued_tokens=10_000)
        s.start()
        first = asyncio.create_task(s.submit([0], [5]))
        await asyncio.sleep(0.05)
        doomed = asyncio.create_task(s.submit([7, 8], [5, 5]))
        await asyncio.sleep(0.05)
        assert s.queue_depth == 2
        doomed.cancel()
        await asyncio.sleep(0)
        assert s.queue_depth == 0 and s.queued_tokens == 0
        gate.set()
        await first
        await s.aclose()

    run(main())
    assert [7] not in calls and all(7 not in c for c in calls)


def test_overload_is_refused_with_retry_after() -> None:
    gate = threading.Event()

    async def main() -> None:
        s, running = await held_in_a_batch(gate, max_queued_tokens=20)
        queued = asyncio.create_task(s.submit([1], [15]))
        await asyncio.sleep(0.01)
        with pytest.raises(EngineOverloadedError) as err:
            await s.submit([2], [10])
        assert err.value.retry_after is not None and err.value.retry_after >= 1
        gate.set()
        await running
        await queued
        await s.aclose()

    run(main())


def test_deadline_expires_queued_work() -> None:
    gate = threading.Event()

    async def main() -> None:
        s, running = await held_in_a_batch(gate, max_queued_tokens=1000)
        late = asyncio.create_task(s.submit([1], [10], deadline=0.0))  # already in the past
        await asyncio.sleep(0.01)
        gate.set()
        await running
        with pytest.raises(EngineTimeoutError):
            await late
        await s.aclose()

    run(main())


def test_close_fails_pending_and_refuses_new_work() -> None:
    gate = threading.Event()

    async def main() -> None:
        s, running = await held_in_a_batch(gate, max_queued_tokens=1000)
        waiting = asyncio.create_task(s.submit([1], [10]))
        await asyncio.sleep(0.01)
        closing = asyncio.create_task(s.aclose())
        await asyncio.sleep(0.01)
        with pytest.raises(EngineUnavailableError):
            await waiting
        gate.set()
        await closing
        with pytest.raises(EngineUnavailableError):
            await s.submit([2], [1])
        running.cancel()

    run(main())


def test_long_input_is_not_starved_by_a_stream_of_short_ones() -> None:
    """Short sequences keep arriving faster than they are served; a long one queued among them is
    still served in arrival order, not after the stream dries up."""
    calls: list[list[int]] = []

    def forward(payloads: list[int]) -> np.ndarray:
        calls.append(list(payloads))
        return np.zeros((len(payloads), 2), dtype=np.float32)

    async def main() -> None:
        s = Scheduler(forward, BatchLimits(max_batch_tokens=100, max_batch_requests=8), name="t", max_queued_tokens=10**6)
        s.start()
        shorts = [asyncio.create_task(s.submit([i], [10])) for i in range(20)]
        long = asyncio.create_task(s.submit([999], [90]))
        more = []
        for i in range(100, 160):  # a steady stream behind it
            more.append(asyncio.create_task(s.submit([i], [10])))
            await asyncio.sleep(0)
        await asyncio.gather(long, *shorts, *more)
        await s.aclose()

    run(main())
    order = [p for batch in calls for p in batch]
    assert order.index(999) < order.index(130)  # served well before the stream behind it ends
    assert all(max(b) < 100 or b == [999] or 999 not in b for b in calls)


class WorkerDied(BaseException):
    """What a worker thread that dies mid-batch looks like from the loop (not an ordinary error)."""


def test_a_worker_dying_mid_batch_fails_that_batch_and_everything_queued_at_once() -> None:
    gate = threading.Event()

    def forward(payloads: list[int]) -> np.ndarray:
        gate.wait(5)
        raise WorkerDied()

    async def main() -> None:
        s = Scheduler(forward, BatchLimits(max_batch_requests=1), name="t", max_queued_tokens=10_000)
        s.start()
        running = asyncio.create_task(s.submit([1], [5]))
        await asyncio.sleep(0.05)  # on the worker now
        queued = [asyncio.create_task(s.submit([i], [5])) for i in range(2, 5)]
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(running, *queued, return_exceptions=True), 5)
        assert all(isinstance(r, EngineUnavailableError) for r in results), results
        assert s.problem is not None and "scheduler died" in s.problem and not s.alive
        with pytest.raises(EngineUnavailableError):
            await s.submit([9], [5])
        assert s.queue_depth == 0 and s.queued_tokens == 0
        await s.aclose()

    run(main())


def test_close_fails_the_running_batch_too_and_does_not_block_the_loop() -> None:
    gate = threading.Event()

    async def main() -> None:
        s = Scheduler(echo_forward([], gate), BatchLimits(max_batch_requests=1), name="t", max_queued_tokens=10_000)
        s.start()
        running = asyncio.create_task(s.submit([1], [5]))
        await asyncio.sleep(0.05)
        closing = asyncio.create_task(s.aclose())
        with pytest.raises(EngineUnavailableError):
            await asyncio.wait_for(running, 2)  # failed at once, while the forward pass still runs
        ticks = 0
        while not closing.done():  # the loop keeps running while the worker finishes its pass
            ticks += 1
            if ticks == 3:
                gate.set()
            await asyncio.sleep(0.02)
        assert ticks >= 3

    run(main())


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[str, int, int]] = []
        self.queues: list[tuple[int, int]] = []

    def batch(self, engine: str, *, sequences: int, tokens: int, seconds: float) -> None:
        assert seconds >= 0
        self.batches.append((engine, sequences, tokens))

    def queue(self, engine: str, *, depth: int, tokens: int) -> None:
        self.queues.append((depth, tokens))


def test_batches_and_queue_changes_are_reported_to_the_observer() -> None:
    seen = Recorder()
    gate = threading.Event()

    async def main() -> None:
        s = Scheduler(echo_forward([], gate), BatchLimits(), name="hf", max_queued_tokens=10_000, observer=seen)
        s.start()
        first = asyncio.create_task(s.submit([0], [7]))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(s.submit([i, i], [3, 4])) for i in range(1, 4)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(first, *rest)
        await s.aclose()

    run(main())
    assert seen.batches == [("hf", 1, 7), ("hf", 6, 21)]
    assert (6, 21) in seen.queues  # the three jobs waiting behind the first
    assert seen.queues[-1] == (0, 0)


def slow_forward(calls: list[list[int]], seconds: float):  # type: ignore[no-untyped-def]
    def forward(payloads: list[int]) -> np.ndarray:
        time.sleep(seconds)
        calls.append(list(payloads))
        return np.zeros((len(payloads), 2), dtype=np.float32)

    return forward


def gathering(calls: list[list[int]], hold: float) -> Scheduler[Any]:
    """A scheduler whose passes take 0.2 s and that may hold a pass up to ``hold`` seconds (the
    share of the last pass is lifted so the hold, not the pass, bounds it)."""
    return Scheduler(slow_forward(calls, 0.2), BatchLimits(), name="t", max_queued_tokens=10_000,
                     gather_seconds=hold, gather_share=1000.0)


@pytest.mark.parametrize("hold", [0.0, 5.0])
def test_clients_answered_by_a_pass_come_back_into_one_pass(hold: float) -> None:
    """Four clients in a closed loop: after the first pass their next requests trickle in (20 ms
    apart); held, they form ONE pass; not held (0), the first of them runs alone."""
    calls: list[list[int]] = []

    async def client(s: Scheduler[Any], i: int) -> None:
        await s.submit([i], [10])
        await asyncio.sleep(0.02 * i)  # the clients answered together come back one after another
        await s.submit([i + 10], [10])

    async def main() -> None:
        s = gathering(calls, hold)
        s.start()
        await asyncio.gather(*(client(s, i) for i in range(4)))
        await s.aclose()

    run(main())
    assert calls[0] == [0, 1, 2, 3]
    if hold:
        assert calls[1:] == [[10, 11, 12, 13]]
    else:
        assert calls[1] == [10] and len(calls) > 2


def test_a_lone_client_is_never_held() -> None:
    calls: list[list[int]] = []

    async def main() -> list[float]:
        s = gathering(calls, 5.0)
        s.start()
        took = []
        for i in range(3):
            started = time.monotonic()
            await s.submit([i], [10])
            took.append(time.monotonic() - started)
        await s.aclose()
        return took

    took = run(main())
    assert calls == [[0], [1], [2]]
    assert max(took) < 2.5  # a hold would have been 5 s; the pass itself is 0.2 s


def test_a_hold_ends_at_its_bound_when_the_clients_do_not_come_back() -> None:
    """Two requests in a pass, then only one comes back: it is held, but no longer than the bound."""
    calls: list[list[int]] = []

    async def main() -> float:
        s = gathering(calls, 0.5)
        s.start()
        await asyncio.gather(s.submit([0], [10]), s.submit([1], [10]))
        started = time.monotonic()
        await s.submit([2], [10])
        took = time.monotonic() - started
        await s.aclose()
        return took

    took = run(main())
    assert calls == [[0, 1], [2]]
    assert 0.5 <= took < 4.0


def test_a_request_still_being_tokenised_is_worth_holding_for() -> None:
    calls: list[list[int]] = []

    async def main() -> None:
        s = gathering(calls, 5.0)
        s.start()
        await s.submit([0], [10])  # the last pass carried one: a lone client would not be held

        async def second() -> None:
            with s.arriving():
                await asyncio.sleep(0.1)  # its texts are being tokenised
            await s.submit([2], [10])  # right as it leaves the block, as the engine does

        tokenising = asyncio.create_task(second())
        await asyncio.sleep(0)  # it is now arriving
        await asyncio.gather(s.submit([1], [10]), tokenising)
        await s.aclose()

    run(main())
    assert calls == [[0], [1, 2]]


def test_a_burst_after_a_quiet_moment_is_one_pass_not_the_first_request_alone() -> None:
    """The engine has been idle far longer than any hold; then three requests come at once: the
    first is queued while the other two are still being tokenised. One pass carries all three
    (started at once, the first would run alone and the other two after it)."""
    calls: list[list[int]] = []

    async def main() -> None:
        s = gathering(calls, 0.3)
        s.start()
        await s.submit([0], [10])
        await asyncio.sleep(0.6)  # quiet: the hold after that pass (at most 0.3 s) is long over

        async def arriving(i: int, seconds: float) -> None:
            with s.arriving():
                await asyncio.sleep(seconds)
            await s.submit([i], [10])

        late = [asyncio.create_task(arriving(2, 0.05)), asyncio.create_task(arriving(3, 0.1))]
        await asyncio.sleep(0)
        await asyncio.gather(s.submit([1], [10]), *late)
        await s.aclose()

    run(main())
    assert calls == [[0], [1, 2, 3]]

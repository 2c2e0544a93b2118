"""Concurrent jobs to one upstream in as few HTTP calls as its pace allows.

vLLM's HTTP front end spends a few milliseconds of CPU on every request, however few inputs it
carries; under load that, not the forward pass, bounds a small model's throughput. So at most
``max_calls`` embedding calls are in flight: a job that finds a free call goes out at once, in its
caller's own task (nothing added at idle; :meth:`Coalescer.try_acquire` lets the caller make that
call its own way); jobs that arrive while every call is busy wait, and the
next call to come back sends all of them together (up to ``max_inputs`` inputs), each job's rows
handed back to it in order. vLLM batches the inputs of one call as it batches concurrent calls, so
the vectors are the ones each job would have got alone.

Sharing can be switched off (:attr:`Coalescer.sharing`): then every job goes on a call of its own
at once, as a client calling the upstream directly would send it. The engine does that where the
upstream's passes are long, where a shared call, answering when its last input is done, costs more
than the upstream's front end saves.

A waiting job whose caller gives up (client gone, deadline) is never sent; a call that fails fails
every job it carried, and each one's caller retries or falls back on its own.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["Coalescer", "take_batch"]

Item = TypeVar("Item")

#: one upstream call: the inputs of one or more jobs and the latest deadline among them
#: (``None``: one of them has none) -> one row per input, in order
Send = Callable[[list[Item], float | None], Awaitable[npt.NDArray[np.float32]]]


@dataclass(slots=True)
class Waiting(Generic[Item]):
    items: Sequence[Item]
    deadline: float | None
    future: asyncio.Future[npt.NDArray[np.float32]]


def take_batch(pending: deque[Waiting[Item]], max_inputs: int) -> list[Waiting[Item]]:
    """The next call's jobs, oldest first: whole jobs while they fit in ``max_inputs`` inputs (the
    first one always, however many inputs it has); jobs whose caller gave up are dropped."""
    batch: list[Waiting[Item]] = []
    size = 0
    while pending:
        head = pending[0]
        if head.future.done():  # cancelled while it waited
            pending.popleft()
            continue
        if batch and size + len(head.items) > max_inputs:
            break
        batch.append(pending.popleft())
        size += len(head.items)
    return batch


def _latest(deadlines: Sequence[float | None]) -> float | None:
    return None if any(d is None for d in deadlines) else max(d for d in deadlines if d is not None)


class Coalescer(Generic[Item]):
    """At most ``max_calls`` calls of ``send`` in flight; what waits meanwhile goes in one call."""

    def __init__(self, send: Send[Item], *, max_calls: int, max_inputs: int) -> None:
        if max_calls < 1 or max_inputs < 1:
            raise ValueError("max_calls and max_inputs must be at least 1")
        self._send = send
        self._max_calls = max_calls
        self._max_inputs = max_inputs
        self._pending: deque[Waiting[Item]] = deque()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: False: no limit on calls in flight, every job on a call of its own
        self.sharing = True
        #: calls sent and the jobs they carried (what the tests read)
        self.calls = 0
        self.jobs = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return len(self._pending)

    @property
    def idle(self) -> bool:
        """No call in flight and nothing waiting."""
        return self._in_flight == 0 and not self._pending

    def try_acquire(self) -> bool:
        """Take a free call for a job of the caller's own (nothing waits and one is free): True,
        and the caller must :meth:`release` it when its call is done; else False."""
        if self._free() and not self._pending:
            self._in_flight += 1
            self.calls += 1
            self.jobs += 1
            return True
        return False

    def release(self) -> None:
        """A call taken with :meth:`try_acquire` is done: the next waiting jobs may go."""
        self._in_flight -= 1
        self._pump()

    async def embed(self, items: Sequence[Item], deadline: float | None) -> npt.NDArray[np.float32]:
        """``items``' rows, from a call of their own or one shared with other waiting jobs."""
        if self.try_acquire():  # a free call: this job goes now, in the caller's task
            try:
                return await self._send(list(items), deadline)
            finally:
                self.release()
        future: asyncio.Future[npt.NDArray[np.float32]] = asyncio.get_running_loop().create_future()
        self._pending.append(Waiting(items, deadline, future))
        self._pump()
        return await future

    def _free(self) -> bool:
        return self._in_flight < self._max_calls or not self.sharing

    def _pump(self) -> None:
        while self._free() and self._pending:
            batch = take_batch(self._pending, self._max_inputs if self.sharing else 1)
            if not batch:
                return
            self._in_flight += 1
            self.calls += 1
            self.jobs += len(batch)
            task = asyncio.get_running_loop().create_task(self._call(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, batch: list[Waiting[Item]]) -> None:
        try:
            items = [x for w in batch for x in w.items]
            rows = await self._send(items, _latest([w.deadline for w in batch]))
        except asyncio.CancelledError:
            for w in batch:
                w.future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - every job of the call gets the call's error
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(exc)
        else:
            start = 0
            for w in batch:
                n = len(w.items)
                if not w.future.done():
                    w.future.set_result(rows[start : start + n])
                start += n
        finally:
            self._in_flight -= 1
            self._pump()

    async def aclose(self) -> None:
        """Cancel the calls in flight (their jobs are cancelled with them) and drop what waits."""
        for w in self._pending:
            w.future.cancel()
        self._pending.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""The async shell around :func:`engine_hf.batching.next_batch`.

Requests enqueue their payloads (sequences, or late-chunking windows) and await one future; a
single loop wakes on an event (never polls), asks the policy for the next batch, and runs the
forward pass on the engine's one worker thread, so the event loop stays free while the model
works. ``forward`` returns one result per payload, of any type (a pooled row, or the span sums of
a window): the scheduler only routes results back in order, the engine interprets them. Every waiter gets a result or an
error: a failed batch fails each of its jobs, a cancelled job's queued sequences are withdrawn,
and a dead loop (or a worker that dies mid-batch) fails everything pending *and* the batch it was
running, then refuses new work. Each forward pass and each change of the queue is reported to an
:class:`~gateway.contract.EngineObserver` (the gateway's metrics).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from engine_hf.batching import GATHER_SHARE, BatchLimits, Queued, next_batch, worth_gathering
from gateway.contract import (
    NULL_OBSERVER,
    EmbedGatewayError,
    EngineError,
    EngineObserver,
    EngineOverloadedError,
    EngineTimeoutError,
    EngineUnavailableError,
)

__all__ = ["BatchOutcome", "Scheduler"]

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")


@dataclass(slots=True)
class BatchOutcome(Generic[R]):
    #: one forward result per submitted payload, in submission order
    results: list[R]
    queue_seconds: float
    inference_seconds: float


@dataclass(eq=False, slots=True)
class _Job:
    future: asyncio.Future[BatchOutcome[Any]]
    out: list[Any]
    enqueued: float
    deadline: float | None
    remaining: int = 0
    started: float | None = None
    inference: float = 0.0


@dataclass(eq=False, slots=True)
class _Item(Generic[P]):
    job: _Job
    pos: int
    payload: P
    queued: Queued = field(default_factory=lambda: Queued(0))


class Scheduler(Generic[P, R]):
    """Batches payloads of many jobs into forward passes of ``forward`` on one worker thread.

    ``forward(payloads) -> one result per payload`` (a sequence of ``len(payloads)``); it raises
    to fail the whole batch (``EmbedGatewayError`` subclasses pass through, anything else becomes
    ``EngineError``).
    """

    def __init__(
        self,
        forward: Callable[[list[P]], Sequence[R]],
        limits: BatchLimits,
        *,
        name: str,
        max_queued_tokens: int,
        clock: Callable[[], float] = time.monotonic,
        observer: EngineObserver = NULL_OBSERVER,
        gather_seconds: float = 0.0,
        gather_share: float = GATHER_SHARE,
    ) -> None:
        """``gather_seconds``: the longest a free worker, right after a pass, holds its next one for
        more work (the clients it just answered, requests still :meth:`arriving`; the rule is
        :func:`~engine_hf.batching.worth_gathering`), and never over ``gather_share`` of the pass
        just run; 0 = start every pass at once."""
        self._forward = forward
        self._observer = observer
        self.limits = limits
        self.name = name
        self.max_queued_tokens = max_queued_tokens
        self._clock = clock
        self._pending: list[_Item[P]] = []
        #: the batch on the worker right now: failed with everything else if the loop dies
        self._running: list[_Item[P]] = []
        self._queued_tokens = 0
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-worker")
        self._loop_task: asyncio.Task[None] | None = None
        self._dead: str | None = None
        self._closed = False
        self._tokens_per_second = 0.0
        self.batches = 0
        self.gather_seconds, self.gather_share = gather_seconds, gather_share
        self._arriving = 0
        #: the last pass: when it ended, how long it ran; sequences queued then plus those it carried
        self._last_end = -math.inf
        self._last_seconds = 0.0
        self._expected = 0

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._run(), name=f"{self.name}-scheduler")

    @property
    def alive(self) -> bool:
        return self._loop_task is not None and not self._closed and self._dead is None

    @property
    def problem(self) -> str | None:
        if self._closed:
            return "closed"
        if self._loop_task is None:
            return "not started"
        return self._dead

    @property
    def queued_tokens(self) -> int:
        return self._queued_tokens

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Mark one request as on its way to :meth:`submit` (being tokenised) for the block: a worker
        that has just finished a pass holds its next one for it (within the hold's bound).
        Leave the block right before ``submit``, with no ``await`` between."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            self._wake.set()

    async def run_in_worker(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the worker thread (between batches), e.g. a warm-up pass."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def submit(
        self, payloads: Sequence[P], lengths: Sequence[int], *, group: Hashable = None, deadline: float | None = None
    ) -> BatchOutcome[R]:
        if self.problem is not None:
            raise EngineUnavailableError(f"engine {self.name} is not serving ({self.problem})", engine=self.name)
        total = sum(lengths)
        if self._queued_tokens and self._queued_tokens + total > self.max_queued_tokens:
            raise EngineOverloadedError(
                f"engine {self.name} is at capacity ({self._queued_tokens} tokens queued)",
                engine=self.name,
                retry_after=self._retry_after(),
            )
        loop = asyncio.get_running_loop()
        job = _Job(loop.create_future(), [None] * len(payloads), self._clock(), deadline, len(payloads))
        for pos, (payload, length) in enumerate(zip(payloads, lengths, strict=True)):
            self._pending.append(_Item(job, pos, payload, Queued(length, group)))
        self._queued_tokens += total
        self._queue_changed()
        self._wake.set()
        try:
            return await job.future
        except asyncio.CancelledError:
            self._withdraw(job)
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._fail_all(EngineUnavailableError(f"engine {self.name} is shutting down", engine=self.name))
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except (asyncio.CancelledError, Exception):
                pass
        # off the event loop: a forward pass still running must not block every other request
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ internals

    def _queue_changed(self) -> None:
        self._observer.queue(self.name, depth=len(self._pending), tokens=self._queued_tokens)

    def _retry_after(self) -> float:
        if self._tokens_per_second <= 0:
            return 1.0
        return float(max(1, math.ceil(self._queued_tokens / self._tokens_per_second)))

    def _withdraw(self, job: _Job) -> None:
        kept = [it for it in self._pending if it.job is not job]
        if len(kept) == len(self._pending):
            return
        self._queued_tokens -= sum(it.queued.length for it in self._pending if it.job is job)
        self._pending = kept
        self._queue_changed()

    def _fail_all(self, err: BaseException) -> None:
        for item in [*self._running, *self._pending]:
            if not item.job.future.done():
                item.job.future.set_exception(err)
        self._running = []
        self._pending = []
        self._queued_tokens = 0
        self._queue_changed()

    def _take_batch(self) -> list[_Item[P]]:
        now = self._clock()
        expired = {it.job for it in self._pending if it.job.deadline is not None and it.job.deadline < now}
        for job in expired:
            if not job.future.done():
                job.future.set_exception(
                    EngineTimeoutError(f"request deadline passed while queued on {self.name}", engine=self.name)
                )
            self._withdraw(job)
        if not self._pending:
            return []
        chosen = next_batch([it.queued for it in self._pending], self.limits)
        picked = set(chosen)
        batch = [self._pending[i] for i in chosen]
        self._pending = [it for i, it in enumerate(self._pending) if i not in picked]
        self._queued_tokens -= sum(it.queued.length for it in batch)
        self._queue_changed()
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    await self._gather()
                    if not (batch := self._take_batch()):
                        break
                    await self._run_batch(loop, batch)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug in the loop itself: never leave waiters hanging
            log.exception("scheduler of %s died", self.name)
            self._dead = f"scheduler died: {type(exc).__name__}"
            self._fail_all(EngineUnavailableError(f"engine {self.name} stopped working", engine=self.name))

    async def _gather(self) -> None:
        """Hold the next pass while :func:`worth_gathering` says more work is coming, until
        ``min(gather_seconds, gather_share * last pass)`` after the last pass ended. Past that
        moment the engine is idle: the pass starts at once (a lone request never waits), unless
        requests it has accepted are still being tokenised: a burst after a quiet moment (clients
        that start together, a bulk job resuming) then goes in one pass instead of the first
        request alone and the rest after it, a split that closed-loop clients keep forever after."""
        window = min(self.gather_seconds, self.gather_share * self._last_seconds)
        remaining = self._last_end + window - self._clock()
        idle = remaining <= 0
        if idle:
            if not self._arriving:
                return
            remaining = self.gather_seconds
        try:
            async with asyncio.timeout(remaining):
                while worth_gathering(
                    self._queued_tokens, len(self._pending), self._arriving, 0 if idle else self._expected,
                    self.limits,
                ):
                    self._wake.clear()
                    await self._wake.wait()
        except TimeoutError:
            pass

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Item[P]]) -> None:
        started = self._clock()
        for it in batch:
            if it.job.started is None:
                it.job.started = started
        self._running = batch
        try:
            results = await loop.run_in_executor(self._executor, self._forward, [it.payload for it in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"forward returned {len(results)} results for {len(batch)} payloads")
        except EmbedGatewayError as exc:
            self._running = []
            self._fail_jobs(batch, exc)
            return
        except Exception as exc:
            self._running = []
            log.exception("forward pass failed on %s (%d sequences)", self.name, len(batch))
            self._fail_jobs(batch, EngineError(f"forward pass failed: {type(exc).__name__}", engine=self.name))
            return
        # (anything else — the worker dying, the loop cancelled — leaves ``_running`` set for _fail_all)
        self._running = []
        self._last_end = self._clock()
        elapsed = self._last_end - started
        self._last_seconds, self._expected = elapsed, len(self._pending) + len(batch)
        self.batches += 1
        tokens = sum(it.queued.length for it in batch)
        self._observer.batch(self.name, sequences=len(batch), tokens=tokens, seconds=elapsed)
        if elapsed > 0:
            rate = tokens / elapsed
            self._tokens_per_second = rate if self._tokens_per_second == 0 else 0.8 * self._tokens_per_second + 0.2 * rate
        for job in {it.job for it in batch}:
            job.inference += elapsed
        for it, result in zip(batch, results, strict=True):
            job = it.job
            if job.future.done():
                continue
            job.out[it.pos] = result
            job.remaining -= 1
            if job.remaining == 0:
                assert job.started is not None
                job.future.set_result(BatchOutcome(job.out, job.started - job.enqueued, job.inference))

    def _fail_jobs(self, batch: list[_Item[P]], err: BaseException) -> None:
        for job in {it.job for it in batch}:
            if not job.future.done():
                job.future.set_exception(err)
            self._withdraw(job)  # its other sequences, still queued, are no use now

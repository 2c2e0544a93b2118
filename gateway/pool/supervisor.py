"""The supervisor: every engine's live state, and the decisions that change it.

It owns one :class:`~gateway.pool.state.EngineState` per engine (breaker, parity results, health,
requests on it) and is the only writer of those: requests report their outcome here
(:meth:`Supervisor.record_success`, :meth:`Supervisor.record_failure`), the parity guard's checks
and the monitor's health checks and probes run here, and :meth:`Supervisor.plan` reads the states
to route a job.

Why a separate monitor loop: requests must never pay for probing. Every ``breaker.probe_interval``
seconds the :class:`Monitor` looks at each engine and does exactly one thing, chosen by the pure
:func:`next_check`:

* an engine the parity guard holds back (not checked yet, or failed), or one with an open circuit
  and parity duty, or one whose last passed check is older than ``parity.interval``: a parity check
  (embeds the probe set; passing closes the circuit, so a restarted vLLM is back in its route
  within one probe interval of answering, and only if it still returns the right vectors);
* an open circuit without parity duty: a probe (health + one embedding) that closes it;
* otherwise a cheap health check that opens the circuit of an engine that stopped answering,
  before requests have to find out.

What these checks record is what readiness reads (:mod:`gateway.pool.readiness`): ``GET /ready``
and the metrics never check an engine themselves, so they lag the truth by at most one probe
interval. Right after start-up or a reload, :meth:`Supervisor.first_health` checks every started
engine no parity check has judged yet, so readiness rests on a real check from the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gateway.contract import EmbedGatewayError, EmbedJob, Engine, RetryableError, route_key
from gateway.pool.events import PoolEvents
from gateway.pool.breaker import BreakerSnapshot, CircuitBreaker
from gateway.pool.parity import PROBES, ParityGuard, ParityResult, ParityStatus, status_on_swap
from gateway.pool.readiness import Availability, Readiness, assess, availability
from gateway.pool.snapshot import Member, Snapshot
from gateway.pool.spaces import Space, space_of
from gateway.pool.state import EngineState
from gateway.pool.routing import plan

__all__ = ["Check", "EngineReport", "Monitor", "Supervisor", "next_check"]

log = logging.getLogger(__name__)


class Check(StrEnum):
    HEALTH = "health"
    PROBE = "probe"
    PARITY = "parity"


def next_check(
    *,
    circuit_open: bool,
    parity: ParityStatus,
    parity_age: float | None,
    parity_interval: float,
) -> Check:
    """What the monitor does for one engine this round (``parity_age``: seconds since its last check)."""
    if parity is not ParityStatus.NOT_REQUIRED:
        stale = parity_age is None or parity_age >= parity_interval
        if circuit_open or parity is not ParityStatus.PASSED or stale:
            return Check.PARITY
    if circuit_open:
        return Check.PROBE
    return Check.HEALTH


@dataclass(frozen=True, slots=True)
class EngineReport:
    """One engine as ``/admin/engines`` shows it (rendered by :mod:`gateway.api.ops.views`): the recorded
    state (what ``/ready`` says) and a live health check (``healthy``, ``health_detail``, ``info``)."""

    ready: bool
    #: why it is out (:class:`gateway.pool.readiness.OutReason`); None while it serves
    reason: str | None
    detail: str
    healthy: bool
    health_detail: str
    tasks: list[str]
    routes: list[str]
    circuit: BreakerSnapshot
    open_for_s: float
    parity: ParityStatus
    parity_results: dict[str, ParityResult]
    in_flight: int
    info: dict[str, Any]


class Supervisor:
    def __init__(self, events: PoolEvents, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.events = events
        self.clock = clock
        self.guard = ParityGuard(events, clock)
        self._states: dict[int, tuple[Engine, EngineState]] = {}

    # ------------------------------------------------------------------ states

    def adopt(self, engine: Engine, failure_threshold: int) -> EngineState:
        """A state for a newly built engine (a kept engine keeps its own)."""
        state = EngineState(CircuitBreaker(failure_threshold, clock=self.clock))
        self._states[id(engine)] = (engine, state)
        return state

    def forget(self, engine: Engine) -> None:
        self._states.pop(id(engine), None)

    def state(self, member: Member) -> EngineState:
        return self._states[id(member.engine)][1]

    def on_swap(self, snap: Snapshot) -> None:
        """A new snapshot is current: thresholds and parity duties follow it."""
        for member in snap.members.values():
            state = self.state(member)
            state.breaker.failure_threshold = snap.settings.breaker.failure_threshold
            status_on_swap(state, member.parity_tasks)

    # ------------------------------------------------------------------ requests

    def states(self, snap: Snapshot) -> dict[str, EngineState]:
        """The live state of each of ``snap``'s engines, by name."""
        return {n: self.state(m) for n, m in snap.members.items()}

    def plan(
        self,
        snap: Snapshot,
        task: str | None,
        *,
        model: str | None = None,
        token_ids: bool = False,
        late_chunking: bool = False,
        token_embeddings: bool = False,
    ) -> list[str]:
        """:func:`gateway.pool.routing.plan` over ``model``'s engines (the first model's when None)
        with the live breaker and parity state."""
        model = model or snap.first_model
        states = self.states(snap)
        return plan(
            task,
            snap.model_routes(model),
            snap.capabilities(model),
            token_ids=token_ids,
            late_chunking=late_chunking,
            token_embeddings=token_embeddings,
            quarantined={n for n, s in states.items() if s.held_back},
            circuit_open={n for n, s in states.items() if s.breaker.is_open},
        )

    def space(self, snap: Snapshot, name: str, task: str | None, dimensions: int | None, normalized: bool) -> Space:
        """The vector space engine ``name`` serves ``task`` in: its model reference's when the parity
        guard cleared it on that task (or it is the reference), else its own."""
        member = snap.members[name]
        ref = snap.reference_of(name)
        state = self.state(member)
        cleared = ref is not None and ref in snap.members and (
            ref == name or (state.parity is ParityStatus.PASSED and task in member.parity_tasks)
        )
        basis, label = (snap.members[ref].capabilities, ref) if cleared and ref is not None else (member.capabilities, name)
        return space_of(basis, label, task, dimensions, normalized)

    @contextmanager
    def serving(self, member: Member) -> Iterator[None]:
        """Count one request on ``member``'s engine while it calls it."""
        with self.state(member).serving():
            yield

    def record_success(self, member: Member) -> None:
        """``member`` just served an embedding: its circuit closes and it counts as answering."""
        self.state(member).record_answered()

    def record_failure(self, member: Member, err: RetryableError) -> None:
        breaker = self.state(member).breaker
        if breaker.record_failure(err.code):
            self._opened(member.name, f"{breaker.failure_threshold} consecutive failures ({err.message})")

    def trip(self, member: Member, reason: str) -> None:
        if self.state(member).breaker.trip(reason):
            self._opened(member.name, reason)

    def _opened(self, name: str, reason: str) -> None:
        self.events.engine_out(name)
        log.error("engine %s is out of its routes (circuit open): %s", name, reason)

    # ------------------------------------------------------------------ checks

    async def check_all(self, snap: Snapshot, *, starting: bool = False) -> None:
        """Run the parity guard on every engine that needs it (start-up, reload)."""
        await asyncio.gather(
            *(self.check_parity(snap, m, starting=starting) for m in snap.members.values() if m.parity_tasks)
        )

    async def check_parity(self, snap: Snapshot, member: Member, *, starting: bool = False) -> None:
        """Compare ``member`` with the reference; passing closes its circuit. ``starting``: an
        engine that does not answer yet (a vLLM still loading) is expected at start-up, not an incident."""
        state = self.state(member)
        try:
            passed = await self.guard.check(snap, member.name, state)
        except RetryableError as exc:
            if starting and state.breaker.trip(f"not answering yet: {exc.message}"):
                log.warning("engine %s does not answer yet (%s); it joins its routes once it answers and "
                            "passes the parity check", member.name, exc.message)
            else:
                self.trip(member, f"parity probe failed: {exc.message}")
            return
        if passed:
            if state.breaker.is_open:
                log.info("engine %s answers again and matches %s; back in its routes", member.name,
                         snap.reference_of(member.name))
            state.record_answered()

    async def probe(self, member: Member) -> None:
        """An open circuit without parity duty: healthy and one real embedding closes it."""
        if not await self._health(member):
            return
        task = next(iter(sorted(member.capabilities.tasks, key=lambda t: "" if t is None else str(t))), None)
        try:
            await member.engine.embed(EmbedJob(inputs=(PROBES[0],), task=task, request_id="probe"))
        except EmbedGatewayError as exc:
            log.debug("probe of %s failed: %s", member.name, exc.message)
            return
        log.info("engine %s answers again; back in its routes", member.name)
        self.record_success(member)

    async def health(self, member: Member) -> None:
        """A health check that takes an engine which stopped answering out of its routes at once."""
        if not await self._health(member):
            self.trip(member, f"health: {self.state(member).health_detail}")

    async def _health(self, member: Member) -> bool:
        health = await member.engine.check_health()
        self.state(member).record_health(health)
        return health.ok

    async def first_health(self, members: Iterable[Member]) -> None:
        """The first health check of engines that started and that no parity check has judged yet,
        so that readiness right after start-up (or a reload) rests on a real check."""
        due = [m for m in members if m.start_error is None and self.state(m).healthy is None
               and not self.state(m).breaker.is_open]
        outcomes = await asyncio.gather(*(self.health(m) for m in due), return_exceptions=True)
        for member, outcome in zip(due, outcomes, strict=True):
            if isinstance(outcome, Exception):  # an engine bug must not stop start-up; the monitor retries
                log.error("first health check of engine %s failed: %r", member.name, outcome)

    # ------------------------------------------------------------------ views

    def availability(self, member: Member) -> Availability:
        """The one readiness rule (:func:`gateway.pool.readiness.availability`) on live state."""
        return availability(member, self.state(member))

    def assess(self, snap: Snapshot, *, draining: bool = False) -> Readiness:
        """The gateway's readiness (:func:`gateway.pool.readiness.assess`) on live state; no I/O."""
        return assess(snap, self.states(snap), draining=draining)

    async def report(self, snap: Snapshot, member: Member) -> EngineReport:
        """What the admin view shows about one engine: the recorded state (what ``/ready`` says)
        and a live health check, which is shown but changes nothing."""
        health = await member.engine.check_health()
        state = self.state(member)
        now = self.availability(member)
        return EngineReport(
            ready=now.available,
            reason=None if now.reason is None else now.reason.value,
            detail=now.detail,
            healthy=health.ok,
            health_detail=health.detail,
            tasks=sorted(route_key(t) for t in member.capabilities.tasks),
            routes=snap.routes_of(member.name),
            circuit=state.breaker.snapshot(),
            open_for_s=round(state.breaker.open_for(), 1),
            parity=state.parity,
            parity_results=dict(state.parity_results),
            in_flight=max(0, state.in_flight),
            info=dict(health.extra) if health.extra else {},
        )


class Monitor:
    """The background loop over the current snapshot's engines."""

    def __init__(self, supervisor: Supervisor, current: Callable[[], Snapshot]) -> None:
        self.supervisor = supervisor
        self.current = current
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="engine-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def tick(self) -> None:
        """One round over the current engines (concurrently: a slow engine does not delay the others)."""
        snap = self.current()
        await asyncio.gather(*(self._one(snap, m) for m in snap.members.values()))

    async def _one(self, snap: Snapshot, member: Member) -> None:
        sup = self.supervisor
        state = sup.state(member)
        age = None if state.parity_checked_at is None else sup.clock() - state.parity_checked_at
        check = next_check(
            circuit_open=state.breaker.is_open,
            parity=state.parity,
            parity_age=age,
            parity_interval=snap.settings.parity.interval,
        )
        try:
            if check is Check.PARITY:
                await sup.check_parity(snap, member)
            elif check is Check.PROBE:
                await sup.probe(member)
            else:
                await sup.health(member)
        except Exception:  # the monitor must outlive any engine bug
            log.exception("monitor: %s check of engine %s failed", check.value, member.name)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.current().settings.breaker.probe_interval)
            await self.tick()

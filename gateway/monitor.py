"""The background monitor: health probes, circuit-breaker probes and periodic parity checks.

Why a separate loop: requests must never pay for probing. Every ``breaker.probe_interval``
seconds the monitor looks at each engine and does exactly one thing, chosen by the pure
:func:`next_check`:

* an engine the parity guard holds back (not checked yet, or failed), or one with an open circuit
  and parity duty, or one whose last passed check is older than ``parity.interval``: a parity check
  (embeds the probe set; passing closes the circuit, so a restarted vLLM is back in its route
  within one probe interval of answering, and only if it still returns the right vectors);
* an open circuit without parity duty: a probe (health + one embedding) that closes it;
* otherwise a cheap health check that opens the circuit of an engine that stopped answering,
  before requests have to find out.

What these checks record is what readiness reads (:mod:`gateway.readiness`): ``GET /ready`` and the
metrics never check an engine themselves, so they lag the truth by at most one probe interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from enum import StrEnum

from gateway.parity import ParityStatus
from gateway.runtime import Runtime
from gateway.snapshot import EngineEntry, Snapshot

__all__ = ["Check", "Monitor", "next_check"]

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


class Monitor:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
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
        snap = self.runtime.current
        await asyncio.gather(*(self._one(snap, e) for e in snap.entries.values()))

    async def _one(self, snap: Snapshot, entry: EngineEntry) -> None:
        age = None if entry.parity_checked_at is None else self.runtime.clock() - entry.parity_checked_at
        check = next_check(
            circuit_open=entry.breaker.is_open,
            parity=entry.parity,
            parity_age=age,
            parity_interval=snap.settings.parity.interval,
        )
        try:
            if check is Check.PARITY:
                await self.runtime.check_parity(snap, entry)
            elif check is Check.PROBE:
                await self.runtime.probe(entry)
            else:
                await self.runtime.health(entry)
        except Exception:  # the monitor must outlive any engine bug
            log.exception("monitor: %s check of engine %s failed", check.value, entry.name)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.runtime.current.settings.breaker.probe_interval)
            await self.tick()

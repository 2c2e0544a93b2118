"""What a request sees: one immutable :class:`Snapshot` of settings, engines and routes.

Why snapshots: operators switch engines and routes without a restart. A request takes the current
snapshot when it starts and keeps it to the end, so it finishes on the engines it started with
(:meth:`gateway.runtime.Runtime.acquire` counts it in on every :class:`EngineEntry`); a reload
builds a new snapshot instead of changing this one.

Each :class:`EngineEntry` carries the engine's circuit breaker and parity-guard state, so an engine
kept across a reload keeps its history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.breaker import CircuitBreaker
from gateway.config import EnginesSettings, Settings
from gateway.contract import Engine, EngineCapabilities, Health, Task, parse_task
from gateway.parity import ParityResult, ParityStatus
from gateway.routing import plan

__all__ = ["EngineEntry", "Snapshot", "configurable_engines", "engine_section", "is_enabled"]


def configurable_engines() -> tuple[str, ...]:
    """Engine names that have a section under ``engines:`` (and so an ``enabled`` switch)."""
    return tuple(EnginesSettings.model_fields)


def engine_section(settings: Settings, name: str) -> dict[str, Any] | None:
    if name not in EnginesSettings.model_fields:
        return None
    dumped: dict[str, Any] = getattr(settings.engines, name).model_dump(mode="json")
    return dumped


def is_enabled(settings: Settings, name: str) -> bool:
    return bool(getattr(settings.engines, name).enabled)


@dataclass(eq=False)
class EngineEntry:
    name: str
    engine: Engine
    breaker: CircuitBreaker
    #: the ``engines.<name>`` section it was built from; None for an engine injected under another name
    config: dict[str, Any] | None
    start_error: str | None = None
    parity: ParityStatus = ParityStatus.NOT_REQUIRED
    #: route keys the parity guard compares this engine on
    parity_keys: frozenset[str] = frozenset()
    parity_results: dict[str, ParityResult] = field(default_factory=dict)
    parity_checked_at: float | None = None
    #: outcome of the last health check (start-up, monitor round, probe, admin view); None before
    #: the first. A parity pass or a served request also counts as "answering".
    healthy: bool | None = None
    #: what that check said (``Health.detail``); shown by ``GET /ready`` without checking again
    health_detail: str = ""
    in_flight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def drained(self) -> None:
        await self._idle.wait()

    def record_health(self, health: Health) -> None:
        """Remember a health check's outcome (readiness and the metrics read it, never re-check)."""
        self.healthy, self.health_detail = health.ok, health.detail

    def record_answered(self) -> None:
        """The engine just served an embedding (a request, a probe, a parity check): it is up."""
        self.breaker.record_success()
        if self.healthy is not True:
            self.healthy, self.health_detail = True, "ok"

    @property
    def held_back(self) -> bool:
        """Kept out of every route by the parity guard (not checked yet, or failed)."""
        return self.parity in (ParityStatus.PENDING, ParityStatus.FAILED)


@dataclass(frozen=True)
class Snapshot:
    """One consistent view: settings, engines, effective routes. Never mutated after creation."""

    settings: Settings
    entries: Mapping[str, EngineEntry]
    routes: Mapping[str, list[str]]
    generation: int

    def capabilities(self) -> dict[str, EngineCapabilities]:
        return {n: e.engine.capabilities for n, e in self.entries.items()}

    def reference(self) -> EngineEntry | None:
        """The engine others are compared with; None when the guard is off, or the reference is
        not enabled or failed to start (nothing to compare with: availability wins, and the
        start-up log says so)."""
        p = self.settings.parity
        ref = self.entries.get(p.reference) if p.enabled else None
        return ref if ref is not None and ref.start_error is None else None

    def parity_keys(self, name: str) -> frozenset[str]:
        """Route keys on which ``name`` must match the reference: tasks routed to it that the
        reference serves too. Empty for the reference itself, or when there is nothing to compare with."""
        ref = self.reference()
        if ref is None or ref.name == name or name not in self.entries:
            return frozenset()
        ref_caps, caps = ref.engine.capabilities, self.entries[name].engine.capabilities
        keys = set()
        for key, names in self.routes.items():
            task = parse_task(key)
            if name in names and task in ref_caps.tasks and task in caps.tasks:
                keys.add(key)
        return frozenset(keys)

    def plan(
        self, task: Task | None, *, token_ids: bool = False, late_chunking: bool = False, token_embeddings: bool = False
    ) -> list[str]:
        """:func:`gateway.routing.plan` with this snapshot's breaker and parity state."""
        return plan(
            task,
            self.routes,
            self.capabilities(),
            token_ids=token_ids,
            late_chunking=late_chunking,
            token_embeddings=token_embeddings,
            quarantined={n for n, e in self.entries.items() if e.held_back},
            circuit_open={n for n, e in self.entries.items() if e.breaker.is_open},
        )

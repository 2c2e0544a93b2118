"""What a request sees: one immutable :class:`Snapshot` of settings, engines and routes.

Why snapshots: operators switch engines and routes without a restart. A request takes the current
snapshot when it starts and keeps it to the end, so it finishes on the engines it started with
(:meth:`gateway.pool.Pool.acquire` holds it); a reload builds a new snapshot instead of changing
this one.

Nothing here changes after construction: each :class:`Member` is frozen, the member table is a
read-only mapping and :attr:`Snapshot.routes` hands out a copy. What does change while an engine
runs (its circuit breaker, parity results, health, requests on it) is the supervisor's
(:class:`gateway.pool.state.EngineState`), so an engine kept across a reload keeps its history
without any snapshot being touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.config import Settings
from gateway.contract import Engine, EngineCapabilities, Task, route_key

__all__ = ["Member", "Snapshot"]


@dataclass(frozen=True, slots=True, eq=False)
class Member:
    """One engine as a snapshot knows it."""

    name: str
    engine: Engine
    #: canonical JSON of the ``engines.<name>`` section it was built from; None for an engine
    #: injected under a name the settings do not know
    config: str | None
    #: why it failed to start (it stays in the snapshot, its circuit open)
    start_error: str | None = None
    #: tasks on which the parity guard compares it with the reference
    parity_tasks: frozenset[Task | None] = frozenset()

    @property
    def capabilities(self) -> EngineCapabilities:
        return self.engine.capabilities


@dataclass(frozen=True, slots=True)
class Snapshot:
    settings: Settings
    members: Mapping[str, Member]
    #: the effective routing table, frozen: route key -> engine names in order
    route_table: tuple[tuple[str, tuple[str, ...]], ...]
    generation: int
    #: the engine others are compared with (see :func:`gateway.pool.parity.reference_of`)
    reference: str | None = None
    _routes: Mapping[str, tuple[str, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", MappingProxyType(dict(self.members)))
        object.__setattr__(self, "_routes", MappingProxyType(dict(self.route_table)))

    @property
    def routes(self) -> dict[str, list[str]]:
        """The routing table (a fresh copy: the snapshot's own cannot be changed)."""
        return {k: list(v) for k, v in self.route_table}

    def route(self, task: Task | None) -> tuple[str, ...]:
        return self._routes.get(route_key(task), ())

    def routes_of(self, name: str) -> list[str]:
        """Route keys that list engine ``name``."""
        return sorted(k for k, names in self.route_table if name in names)

    def capabilities(self) -> dict[str, EngineCapabilities]:
        return {n: m.capabilities for n, m in self.members.items()}

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

from gateway.catalog import Catalog, build_catalog
from gateway.config import Settings
from gateway.contract import Engine, EngineCapabilities, route_key

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
    #: tasks on which the parity guard compares it with its model's reference
    parity_tasks: frozenset[str | None] = frozenset()
    #: the model it serves
    model: str = ""

    @property
    def capabilities(self) -> EngineCapabilities:
        return self.engine.capabilities


@dataclass(frozen=True, slots=True)
class Snapshot:
    settings: Settings
    members: Mapping[str, Member]
    #: the effective routing tables, frozen: ``((model, route key), engine names in order)``; a
    #: table given as ``(route key, names)`` pairs belongs to the catalog's first model
    route_table: tuple[tuple[tuple[str, str] | str, tuple[str, ...]], ...]
    generation: int
    #: the first model's reference engine (see :func:`gateway.pool.parity.reference_of`)
    reference: str | None = None
    #: model -> the engine its other engines are compared with (None: not compared)
    references: Mapping[str, str | None] | None = None
    #: the models and names this snapshot serves (derived from ``settings`` when not given)
    catalog: Catalog | None = None
    _routes: Mapping[tuple[str, str], tuple[str, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        catalog = self.catalog if self.catalog is not None else build_catalog(self.settings)
        first = next(iter(catalog.models))
        table = tuple(((k if isinstance(k, tuple) else (first, k)), tuple(v)) for k, v in self.route_table)
        refs = dict(self.references) if self.references is not None else {first: self.reference}
        owner = {n: catalog.model_of(n) or first for n in self.members}
        members = {n: m if m.model else _with_model(m, owner[n]) for n, m in self.members.items()}
        object.__setattr__(self, "catalog", catalog)
        object.__setattr__(self, "route_table", table)
        object.__setattr__(self, "references", MappingProxyType(refs))
        object.__setattr__(self, "reference", refs.get(first))
        object.__setattr__(self, "members", MappingProxyType(members))
        object.__setattr__(self, "_routes", MappingProxyType(dict(table)))

    @property
    def models(self) -> tuple[str, ...]:
        """The models served, the catalog's order."""
        assert self.catalog is not None
        return tuple(self.catalog.models)

    @property
    def first_model(self) -> str:
        return self.models[0]

    @property
    def routes(self) -> dict[str, list[str]]:
        """The first model's routing table (a fresh copy): with one model, THE routing table."""
        return self.model_routes(self.first_model)

    def model_routes(self, model: str) -> dict[str, list[str]]:
        """One model's routing table (a fresh copy: the snapshot's own cannot be changed)."""
        return {k: list(v) for (m, k), v in self.route_table if m == model}

    def route(self, task: str | None, model: str | None = None) -> tuple[str, ...]:
        return self._routes.get((model or self.first_model, route_key(task)), ())

    def routes_of(self, name: str) -> list[str]:
        """Route keys (of its model) that list engine ``name``."""
        return sorted(k for (_, k), names in self.route_table if name in names)

    def model_of(self, name: str) -> str:
        """The model engine ``name`` serves."""
        return self.members[name].model

    def reference_of(self, name: str) -> str | None:
        """The engine ``name`` is compared with: its model's reference."""
        assert self.references is not None
        return self.references.get(self.model_of(name)) if name in self.members else None

    def engines_of(self, model: str) -> list[str]:
        return [n for n, m in self.members.items() if m.model == model]

    def capabilities(self, model: str | None = None) -> dict[str, EngineCapabilities]:
        """Every engine's capabilities, or only ``model``'s engines'."""
        return {n: m.capabilities for n, m in self.members.items() if model is None or m.model == model}


def _with_model(member: Member, model: str) -> Member:
    from dataclasses import replace

    return replace(member, model=model)

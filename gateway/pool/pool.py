"""The owner of the engines: start-up, live reload, the snapshot swap, holding, shutdown.

Requests see the engines through the current :class:`~gateway.pool.snapshot.Snapshot`, held for
the request's life with :meth:`Pool.acquire`. A reload (SIGHUP, ``POST /admin/reload``) validates
the new configuration first, builds and starts what is new, swaps in a new snapshot, and closes an
engine it dropped only once no request holds a snapshot from before the swap. An unchanged engine
keeps its live state (breaker and parity history, in the supervisor); a rebuilt one starts over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace

from gateway.catalog import Catalog, build_catalog
from gateway.config import Settings
from gateway.contract import EmbedGatewayError, Engine, EngineCapabilities
from gateway.engines import engine_config
from gateway.errors import ReloadError
from gateway.kinds import engine_kind
from gateway.pool.events import PoolEvents
from gateway.pool.parity import parity_tasks, reference_of
from gateway.pool.routing import resolve_routes, task_keys
from gateway.pool.snapshot import Member, Snapshot
from gateway.pool.supervisor import Supervisor
from gateway.startup import StartupError

__all__ = ["EngineBuilder", "Pool"]

log = logging.getLogger(__name__)

#: builds the engine called ``name`` from the settings (not started)
EngineBuilder = Callable[[str, Settings], Engine]

#: model -> route key -> engine names in order
RouteTables = dict[str, dict[str, list[str]]]

#: how long a dropped engine may keep serving requests that started before a reload
_DRAIN_TIMEOUT_S = 600.0


class Pool:
    """Owns the engines and the current snapshot; the supervisor owns their live state."""

    def __init__(
        self,
        metrics: PoolEvents,
        *,
        builder: EngineBuilder,
        clock: Callable[[], float] = time.monotonic,
        reclaim: Callable[[], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.builder = builder
        #: called once a reload has let go of objects (the old configuration; retired engines, once
        #: closed): the serving process refreezes its heap (:func:`gateway.lifecycle.refreeze_heap`)
        self._reclaim = reclaim or (lambda: None)
        self.supervisor = Supervisor(metrics, clock=clock)
        self._current: Snapshot | None = None
        #: generation -> requests holding that snapshot
        self._holds: Counter[int] = Counter()
        self._released = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self._closed = False

    # ------------------------------------------------------------------ the current view

    @property
    def current(self) -> Snapshot:
        if self._current is None:
            raise RuntimeError("the pool has not been opened")
        return self._current

    @contextmanager
    def acquire(self) -> Iterator[Snapshot]:
        """The current snapshot, held for one request: no engine of it is closed meanwhile. The
        request counts on an engine only while it calls it (:meth:`Supervisor.serving`)."""
        snap = self.current
        self._holds[snap.generation] += 1
        try:
            yield snap
        finally:
            self._holds[snap.generation] -= 1
            if not self._holds[snap.generation]:
                del self._holds[snap.generation]
                self._released.set()

    def held(self, before: int) -> int:
        """Requests holding a snapshot older than generation ``before``."""
        return sum(n for g, n in self._holds.items() if g < before)

    async def _drained(self, before: int) -> None:
        while self.held(before):
            self._released.clear()
            await self._released.wait()

    # ------------------------------------------------------------------ start-up and shutdown

    async def open(self, settings: Settings, engines: Mapping[str, Engine] | None = None) -> None:
        """Build (unless injected), validate routes, start engines, run the parity guard once."""
        catalog = build_catalog(settings)
        try:
            chosen = dict(engines) if engines is not None else {
                n: self.builder(n, settings) for n in catalog.engines
            }
        except RuntimeError as exc:  # an engine's dependencies are missing (the message names the extra)
            raise StartupError(str(exc)) from exc
        if not chosen:
            raise StartupError("no engine is enabled: enable engines.hf and/or engines.vllm")
        routes = self._routes(settings, catalog, {n: e.capabilities for n, e in chosen.items()})  # a bad route fails fast
        members = await self._start(settings, chosen)
        if all(m.start_error for m in members.values()):
            for member in members.values():
                await member.engine.aclose()
                self.supervisor.forget(member.engine)
            reasons = "; ".join(f"engine {n}: {m.start_error}" for n, m in members.items())
            raise StartupError(f"no engine could start ({reasons})")
        snap = self._swap(settings, catalog, members, routes)
        await self.supervisor.check_all(snap, starting=True)
        await self.supervisor.first_health(snap.members.values())

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close every engine: each fails what it still has pending (its waiters get a 503 at
        once) and stops a managed process. Idempotent: shutdown's grace period may call it
        before the lifespan does."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._retiring):
            task.cancel()
        if self._current is not None:
            await asyncio.gather(*(_close(m) for m in self._current.members.values()))

    # ------------------------------------------------------------------ reload

    async def reload(self, settings: Settings) -> Snapshot:
        """Apply new settings: keep unchanged engines, build and start enabled/changed ones, drop
        disabled ones after their in-flight requests. Raises ``ReloadError`` and changes nothing
        when the new configuration cannot work."""
        async with self._reload_lock:
            old = self.current
            if settings.server != old.settings.server:
                log.warning("reload: server.* changed; host, port and log level take effect only after a restart")
            try:
                catalog = build_catalog(settings)
            except ValueError as exc:
                raise ReloadError(str(exc)) from exc
            configured = catalog.engines
            keep: dict[str, Member] = {}
            for name, member in old.members.items():
                config = engine_config(settings, name)
                known = name in configured or name in type(settings.engines).model_fields
                if not known or (config is not None and config == member.config):
                    keep[name] = member  # an engine injected under a name the settings do not know: always kept
            built: dict[str, Engine] = {}
            for name in configured:
                if name not in keep:
                    try:
                        built[name] = self.builder(name, settings)
                    except Exception as exc:
                        raise ReloadError(f"cannot build engine {name}: {exc}") from exc
            caps = {**{n: m.capabilities for n, m in keep.items()}, **{n: e.capabilities for n, e in built.items()}}
            if not caps:
                raise ReloadError("the new configuration enables no engine")
            try:
                routes = self._routes(settings, catalog, caps)
            except ValueError as exc:
                raise ReloadError(str(exc)) from exc
            new = await self._start(settings, built)
            failed = [n for n, m in new.items() if m.start_error]
            if failed:
                for member in new.values():
                    await member.engine.aclose()
                    self.supervisor.forget(member.engine)
                raise ReloadError(f"engine(s) {', '.join(failed)} failed to start; configuration unchanged")
            self.supervisor.guard.forget_reference()  # the reference or its settings may have changed
            snap = self._swap(settings, catalog, {**keep, **new}, routes)
            dropped = [m for n, m in old.members.items() if n not in keep]
            log.info(
                "reload: generation %d; engines %s%s; routes %s",
                snap.generation, ", ".join(snap.members),
                f" (new: {', '.join(new)})" if new else "",
                routes,
            )
            if dropped:
                task = asyncio.create_task(self._retire(dropped, before=snap.generation))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            await self.supervisor.check_all(snap)
            await self.supervisor.first_health(snap.members[n] for n in new)
            del old
            self._reclaim()
            return self.current

    async def _retire(self, members: list[Member], *, before: int) -> None:
        """Close dropped engines once no request holds a snapshot from before generation ``before``."""
        names = ", ".join(m.name for m in members)
        try:
            await asyncio.wait_for(self._drained(before), timeout=_DRAIN_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.warning("engine(s) %s: %d requests still held them after %.0fs; closing anyway",
                        names, self.held(before), _DRAIN_TIMEOUT_S)
        for member in members:
            log.info("engine %s drained; closing it", member.name)
            await member.engine.aclose()
            self.supervisor.forget(member.engine)
        del members
        self._reclaim()

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _routes(settings: Settings, catalog: Catalog, capabilities: Mapping[str, EngineCapabilities]) -> RouteTables:
        """Each model's effective routing table over the engines that serve it (``ValueError`` naming
        what cannot work). An engine the catalog does not know (injected) serves the first model."""
        first = next(iter(catalog.models))
        tables: RouteTables = {}
        for model_id, entry in catalog.models.items():
            caps = {n: c for n, c in capabilities.items() if (catalog.model_of(n) or first) == model_id}
            kinds = {n: engine_kind(entry.engines[n]) for n in caps if n in entry.engines}
            if entry.legacy:
                legacy = type(settings.engines).model_fields
                disabled = [n for n in legacy if n not in caps and not getattr(settings.engines, n).enabled]
                tables[model_id] = resolve_routes(
                    entry.routes, caps, disabled=disabled, kinds=kinds,
                    keys=task_keys(caps, well_known=True),
                    where="routes" if not settings.models or not settings.models[model_id].routes
                    else f"models.{model_id}.routes",
                )
            else:
                if not caps:
                    raise ValueError(f"models.{model_id} has no engine")
                tables[model_id] = resolve_routes(
                    entry.routes, caps, kinds=kinds, keys=task_keys(caps), where=f"models.{model_id}.routes"
                )
            served = {k for k, names in tables[model_id].items() if names}
            if entry.task is not None and str(entry.task) not in served:
                raise ValueError(f"models.{model_id}.task {entry.task!r} is not a task its engines serve")
        for name, resolved in catalog.aliases.items():
            table = tables.get(resolved.model, {})
            key = "none" if resolved.task is None else str(resolved.task)
            if resolved.name != resolved.model and not table.get(key) and not catalog.models[resolved.model].legacy:
                served = ", ".join(k for k, v in table.items() if v) or "none"
                raise ValueError(f"alias {name!r}: model {resolved.model!r} has no engine for task {key!r} (its tasks: {served})")
        return tables

    async def _start(self, settings: Settings, engines: Mapping[str, Engine]) -> dict[str, Member]:
        """Start each engine (one after another: a GPU loads one model at a time); one that
        fails stays, its circuit open, with the reason."""
        members: dict[str, Member] = {}
        for name, engine in engines.items():
            self.supervisor.adopt(engine, settings.breaker.failure_threshold)
            member = Member(name, engine, engine_config(settings, name), model=build_catalog(settings).model_of(name) or "")
            try:
                await engine.start()
            except EmbedGatewayError as exc:
                member = replace(member, start_error=exc.message)
            except Exception as exc:
                member = replace(member, start_error=f"{type(exc).__name__}: {exc}")
            if member.start_error:
                log.error("engine %s failed to start: %s", name, member.start_error)
                self.supervisor.trip(member, f"failed to start: {member.start_error}")
            members[name] = member
        return members

    def _swap(self, settings: Settings, catalog: Catalog, members: Mapping[str, Member], routes: RouteTables) -> Snapshot:
        """Freeze a new snapshot (with each engine's parity duty: against its own model's reference,
        never across models) and make it current."""
        first = next(iter(catalog.models))
        started = {n: m.start_error is None for n, m in members.items()}
        owner = {n: catalog.model_of(n) or first for n in members}
        references: dict[str, str | None] = {}
        updated: dict[str, Member] = {}
        for model_id, entry in catalog.models.items():
            names = [n for n in members if owner[n] == model_id]
            wanted = entry.reference
            reference = None if wanted is None else reference_of(
                settings.parity.model_copy(update={"reference": wanted}), {n: started[n] for n in names}
            )
            references[model_id] = reference
            caps = {n: members[n].capabilities for n in names}
            for n in names:
                updated[n] = replace(members[n], model=model_id,
                                     parity_tasks=parity_tasks(n, reference, routes[model_id], caps))
            if settings.parity.enabled and reference is None and len(names) > 1 and wanted is not None:
                log.warning("parity guard: reference engine %r of model %s is not running; its engines are NOT "
                            "compared", wanted, model_id)
        snap = Snapshot(
            settings=settings,
            members=updated,
            route_table=tuple(((m, k), tuple(v)) for m, table in routes.items() for k, v in table.items()),
            generation=0 if self._current is None else self._current.generation + 1,
            references=references,
            catalog=catalog,
        )
        self.supervisor.on_swap(snap)
        self._current = snap
        return snap


async def _close(member: Member) -> None:
    try:
        await member.engine.aclose()
    except Exception:  # one engine failing to close must not keep the others open
        log.exception("engine %s failed to close", member.name)

"""The owner of the engines: start-up, parity checks, probes, live reload, shutdown.

Requests see the engines through the current :class:`~gateway.snapshot.Snapshot`. A reload (SIGHUP,
``POST /admin/reload``) validates the new configuration first, builds and starts what is new,
swaps in a new snapshot, and closes an engine it dropped only once no request holds it any more.
An unchanged engine keeps its entry (breaker and parity history); a rebuilt one starts over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway import parity
from gateway.breaker import CircuitBreaker
from gateway.config import Settings
from gateway.contract import (
    EmbedGatewayError,
    EmbedJob,
    Engine,
    InvalidRequestError,
    RetryableError,
    parse_task,
)
from gateway.metrics import GatewayMetrics
from gateway.parity import ParityResult, ParityStatus
from gateway.readiness import engine_state
from gateway.routing import resolve_routes, route_key
from gateway.snapshot import EngineEntry, Snapshot, configurable_engines, engine_section, is_enabled
from gateway.startup import StartupError

__all__ = ["EngineBuilder", "ReloadError", "Runtime"]

log = logging.getLogger(__name__)

#: builds the engine called ``name`` from the settings (not started)
EngineBuilder = Callable[[str, Settings], Engine]

#: how long a dropped engine may keep serving requests that started before a reload
_DRAIN_TIMEOUT_S = 600.0


class ReloadError(InvalidRequestError):
    """A reload was refused; the previous configuration stays in force (a 400 on /admin/reload)."""

    code = "invalid_config"


class Runtime:
    """Owns the engines: start-up, parity checks, probes, live reload, shutdown."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        *,
        builder: EngineBuilder,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.builder = builder
        self.clock = clock
        self._current: Snapshot | None = None
        self._reference_vectors: dict[tuple[int, str], npt.NDArray[np.float32]] = {}
        self._reload_lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self._closed = False

    # ------------------------------------------------------------------ the current view

    @property
    def current(self) -> Snapshot:
        if self._current is None:
            raise RuntimeError("the runtime has not been opened")
        return self._current

    @contextmanager
    def acquire(self) -> Iterator[Snapshot]:
        """The current snapshot, held for one request: its engines are not closed meanwhile."""
        snap = self.current
        for entry in snap.entries.values():
            entry.enter()
        try:
            yield snap
        finally:
            for entry in snap.entries.values():
                entry.leave()

    # ------------------------------------------------------------------ start-up and shutdown

    async def open(self, settings: Settings, engines: Mapping[str, Engine] | None = None) -> None:
        """Build (unless injected), validate routes, start engines, run the parity guard once."""
        try:
            chosen = dict(engines) if engines is not None else {
                n: self.builder(n, settings) for n in configurable_engines() if is_enabled(settings, n)
            }
        except RuntimeError as exc:  # an engine's dependencies are missing (the message names the extra)
            raise StartupError(str(exc)) from exc
        if not chosen:
            raise StartupError("no engine is enabled: enable engines.hf and/or engines.vllm")
        entries = {n: self._entry(n, e, settings) for n, e in chosen.items()}
        routes = self._routes(settings, entries)  # before loading anything: a bad route fails fast
        started = await self._start(entries.values())
        if not started:
            for entry in entries.values():
                await entry.engine.aclose()
            reasons = "; ".join(f"engine {e.name}: {e.start_error}" for e in entries.values())
            raise StartupError(f"no engine could start ({reasons})")
        self._swap(settings, entries, routes)
        await self.check_all(starting=True)
        await self.first_health(entries.values())

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
            await asyncio.gather(*(self._close(e) for e in self._current.entries.values()))

    @staticmethod
    async def _close(entry: EngineEntry) -> None:
        try:
            await entry.engine.aclose()
        except Exception:  # one engine failing to close must not keep the others open
            log.exception("engine %s failed to close", entry.name)

    # ------------------------------------------------------------------ reload

    async def reload(self, settings: Settings) -> Snapshot:
        """Apply new settings: keep unchanged engines, build and start enabled/changed ones, drop
        disabled ones after their in-flight requests. Raises ``ReloadError`` and changes nothing
        when the new configuration cannot work."""
        async with self._reload_lock:
            old = self.current
            if settings.server != old.settings.server:
                log.warning("reload: server.* changed; host, port and log level take effect only after a restart")
            keep: dict[str, EngineEntry] = {}
            new: dict[str, EngineEntry] = {}
            for name, entry in old.entries.items():
                section = engine_section(settings, name)
                if section is None:
                    keep[name] = entry  # injected under a name the settings do not know: always kept
                elif section["enabled"] and section == entry.config:
                    keep[name] = entry
            for name in configurable_engines():
                if is_enabled(settings, name) and name not in keep:
                    try:
                        new[name] = self._entry(name, self.builder(name, settings), settings)
                    except Exception as exc:
                        raise ReloadError(f"cannot build engine {name}: {exc}") from exc
            entries = {**keep, **new}
            if not entries:
                raise ReloadError("the new configuration enables no engine")
            try:
                routes = self._routes(settings, entries)
            except ValueError as exc:
                raise ReloadError(str(exc)) from exc
            if new:
                await self._start(new.values())
                failed = [n for n, e in new.items() if e.start_error]
                if failed:
                    for entry in new.values():
                        await entry.engine.aclose()
                    raise ReloadError(f"engine(s) {', '.join(failed)} failed to start; configuration unchanged")
            for entry in keep.values():
                entry.breaker.failure_threshold = settings.breaker.failure_threshold
            self._reference_vectors.clear()  # the reference or its settings may have changed
            snap = self._swap(settings, entries, routes)
            dropped = [e for n, e in old.entries.items() if entries.get(n) is not e]
            log.info(
                "reload: generation %d; engines %s%s; routes %s",
                snap.generation, ", ".join(entries),
                f" (new: {', '.join(new)})" if new else "",
                {k: v for k, v in routes.items()},
            )
            if dropped:
                task = asyncio.create_task(self._retire(dropped))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            await self.check_all()
            await self.first_health(new.values())
            return self.current

    async def _retire(self, entries: list[EngineEntry]) -> None:
        for entry in entries:
            try:
                await asyncio.wait_for(entry.drained(), timeout=_DRAIN_TIMEOUT_S)
            except asyncio.TimeoutError:
                log.warning("engine %s still had %d requests after %.0fs; closing it anyway",
                            entry.name, entry.in_flight, _DRAIN_TIMEOUT_S)
            log.info("engine %s drained; closing it", entry.name)
            await entry.engine.aclose()

    # ------------------------------------------------------------------ parity and probes

    async def check_all(self, *, starting: bool = False) -> None:
        """Run the parity guard on every engine that needs it (start-up, reload)."""
        snap = self.current
        await asyncio.gather(
            *(self.check_parity(snap, e, starting=starting) for e in snap.entries.values() if e.parity_keys)
        )

    async def check_parity(self, snap: Snapshot, entry: EngineEntry, *, starting: bool = False) -> None:
        """Compare ``entry`` with the reference. ``starting``: an engine that does not answer yet
        (a vLLM still loading) is expected at start-up, not an incident."""
        ref = snap.reference()
        if ref is None or not entry.parity_keys:
            return
        p = snap.settings.parity
        results: dict[str, ParityResult] = {}
        for key in sorted(entry.parity_keys):
            task = parse_task(key)
            try:
                expected = await self._reference(ref, key)
            except EmbedGatewayError as exc:
                log.warning("parity guard: reference engine %s failed (%s); %s not checked this time",
                            ref.name, exc.message, entry.name)
                return
            try:
                result = await parity.check(
                    entry.engine, expected, task=task, threshold=p.threshold, max_norm_deviation=p.max_norm_deviation
                )
            except RetryableError as exc:
                if starting and entry.breaker.trip(f"not answering yet: {exc.message}"):
                    log.warning("engine %s does not answer yet (%s); it joins its routes once it answers and "
                                "passes the parity check", entry.name, exc.message)
                else:
                    self.trip(entry, f"parity probe failed: {exc.message}")
                return
            except EmbedGatewayError as exc:
                result = ParityResult(False, task, 0.0, 0.0, float("inf"), f"engine error: {exc.message}", time.time())
            results[key] = result
            self.metrics.parity_cosine.labels(engine=entry.name, task=key).set(result.mean_cosine)
        ok = all(r.ok for r in results.values())
        before, before_results = entry.parity, entry.parity_results
        entry.parity = ParityStatus.PASSED if ok else ParityStatus.FAILED
        entry.parity_results = results
        entry.parity_checked_at = self.clock()
        if ok:
            if entry.breaker.is_open:
                log.info("engine %s answers again and matches %s; back in its routes", entry.name, ref.name)
            entry.record_answered()
            if before is not ParityStatus.PASSED:
                log.info("parity guard: engine %s matches %s (%s)", entry.name, ref.name,
                         "; ".join(f"{k}: {r.detail}" for k, r in results.items()))
            return
        for key, r in results.items():
            if not r.ok:
                self.metrics.parity_failures.labels(engine=entry.name, task=key).inc()
        failing = {k for k, r in results.items() if not r.ok}
        changed = before is not ParityStatus.FAILED or failing != {k for k, r in before_results.items() if not r.ok}
        if changed:
            log.error(
                "parity guard: engine %s does NOT match %s and is out of its routes: %s",
                entry.name, ref.name, "; ".join(f"{k}: {r.detail}" for k, r in results.items() if not r.ok),
            )

    async def probe(self, entry: EngineEntry) -> None:
        """An open circuit without parity duty: healthy and one real embedding closes it."""
        health = await entry.engine.check_health()
        entry.record_health(health)
        if not health.ok:
            return
        caps = entry.engine.capabilities
        task = next(iter(sorted(caps.tasks, key=lambda t: "" if t is None else t.value)), None)
        try:
            await entry.engine.embed(EmbedJob(inputs=(parity.PROBES[0],), task=task, request_id="probe"))
        except EmbedGatewayError as exc:
            log.debug("probe of %s failed: %s", entry.name, exc.message)
            return
        log.info("engine %s answers again; back in its routes", entry.name)
        entry.record_answered()

    async def health(self, entry: EngineEntry) -> None:
        """A health check that takes an engine which stopped answering out of its routes at once."""
        health = await entry.engine.check_health()
        entry.record_health(health)
        if not health.ok:
            self.trip(entry, f"health: {health.detail}")

    async def first_health(self, entries: Iterable[EngineEntry]) -> None:
        """The first health check of engines that started and that no parity check has judged yet,
        so that readiness right after start-up (or a reload) rests on a real check."""
        due = [e for e in entries if e.start_error is None and e.healthy is None and not e.breaker.is_open]
        outcomes = await asyncio.gather(*(self.health(e) for e in due), return_exceptions=True)
        for entry, outcome in zip(due, outcomes, strict=True):
            if isinstance(outcome, Exception):  # an engine bug must not stop start-up; the monitor retries
                log.error("first health check of engine %s failed: %r", entry.name, outcome)

    def record_failure(self, entry: EngineEntry, err: RetryableError) -> None:
        if entry.breaker.record_failure(err.code):
            self._opened(entry, f"{entry.breaker.failure_threshold} consecutive failures ({err.message})")

    def trip(self, entry: EngineEntry, reason: str) -> None:
        if entry.breaker.trip(reason):
            self._opened(entry, reason)

    def _opened(self, entry: EngineEntry, reason: str) -> None:
        self.metrics.circuit_opened.labels(engine=entry.name).inc()
        log.error("engine %s is out of its routes (circuit open): %s", entry.name, reason)

    async def _reference(self, ref: EngineEntry, key: str) -> npt.NDArray[np.float32]:
        cache_key = (id(ref.engine), key)
        if cache_key not in self._reference_vectors:
            self._reference_vectors[cache_key] = await parity.embed_probes(ref.engine, parse_task(key))
        return self._reference_vectors[cache_key]

    # ------------------------------------------------------------------ views

    async def status(self, snap: Snapshot, entry: EngineEntry) -> dict[str, Any]:
        """What the admin view shows about one engine: the recorded state (what /ready says) and a
        live health check (``healthy``, ``info``), which is shown but changes nothing."""
        health = await entry.engine.check_health()
        b = entry.breaker.snapshot()
        state = engine_state(entry)
        return {
            "ready": state.available,
            "reason": None if state.reason is None else state.reason.value,
            "detail": state.detail,
            "healthy": health.ok,
            "health_detail": health.detail,
            "tasks": sorted(route_key(t) for t in entry.engine.capabilities.tasks),
            "routes": sorted(k for k, names in snap.routes.items() if entry.name in names),
            "circuit": {
                "state": b.state.value,
                "consecutive_failures": b.consecutive_failures,
                "times_opened": b.times_opened,
                "open_for_s": round(entry.breaker.open_for(), 1),
                "last_reason": b.last_reason,
            },
            "parity": {
                "status": entry.parity.value,
                "results": {k: r.as_dict() for k, r in entry.parity_results.items()},
            },
            "in_flight": max(0, entry.in_flight),
            **({"info": health.extra} if health.extra else {}),
        }

    # ------------------------------------------------------------------ internals

    def _entry(self, name: str, engine: Engine, settings: Settings) -> EngineEntry:
        return EngineEntry(
            name=name,
            engine=engine,
            breaker=CircuitBreaker(settings.breaker.failure_threshold, clock=self.clock),
            config=engine_section(settings, name),
        )

    @staticmethod
    def _routes(settings: Settings, entries: Mapping[str, EngineEntry]) -> dict[str, list[str]]:
        disabled = [n for n in configurable_engines() if n not in entries and not is_enabled(settings, n)]
        return resolve_routes(settings.routes, {n: e.engine.capabilities for n, e in entries.items()}, disabled=disabled)

    async def _start(self, entries: Iterable[EngineEntry]) -> int:
        started = 0
        for entry in entries:
            try:
                await entry.engine.start()
                started += 1
                continue
            except EmbedGatewayError as exc:
                entry.start_error = exc.message
            except Exception as exc:
                entry.start_error = f"{type(exc).__name__}: {exc}"
            log.error("engine %s failed to start: %s", entry.name, entry.start_error)
            self.trip(entry, f"failed to start: {entry.start_error}")
        return started

    def _swap(self, settings: Settings, entries: dict[str, EngineEntry], routes: dict[str, list[str]]) -> Snapshot:
        generation = 0 if self._current is None else self._current.generation + 1
        snap = Snapshot(settings=settings, entries=entries, routes=routes, generation=generation)
        if settings.parity.enabled and snap.reference() is None and len(entries) > 1:
            log.warning("parity guard: reference engine %r is not running; engines are NOT compared",
                        settings.parity.reference)
        for name, entry in entries.items():
            keys = snap.parity_keys(name)
            if not keys:
                entry.parity, entry.parity_results = ParityStatus.NOT_REQUIRED, {}
            elif entry.parity is ParityStatus.NOT_REQUIRED or not keys <= entry.parity_keys:
                entry.parity = ParityStatus.PENDING  # newly compared, or on a new task: check before serving
            entry.parity_keys = keys
        self._current = snap
        return snap

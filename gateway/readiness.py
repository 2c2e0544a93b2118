"""Is this gateway ready to take traffic? One pure answer, shared by ``GET /ready`` and the metrics.

Why this rule: a load balancer (or Kubernetes) takes a replica whose readiness fails out of
service. If an optional fast path being out (a vLLM the parity guard keeps out, a dead vLLM, an
open circuit) failed readiness, the only replica would be taken out while the exact engine still
serves every task: an outage caused by an optimisation. So readiness asks one question per task:

    does every task the configuration serves have at least one engine able to serve it *now*?

* yes, and every engine is in: ``ready`` (HTTP 200);
* yes, but some engine is out: ``degraded`` (HTTP 200) — the body and the metrics say which
  engine is out and why, and which tasks lost their first (fast) engine;
* no, some task has no engine able to serve it: ``not ready`` (HTTP 503);
* the gateway is draining for shutdown: ``shutting down`` (HTTP 503).

"Which engines serve which task" is the routing policy's own :func:`gateway.routing.candidates`;
"able now" is :func:`engine_state`, computed from the state the monitor, the parity guard and the
circuit breakers keep. Nothing here does I/O: answering ``GET /ready`` never probes an engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.contract import parse_task
from gateway.parity import ParityStatus
from gateway.routing import ROUTE_KEYS, candidates
from gateway.snapshot import EngineEntry, Snapshot

__all__ = ["EngineState", "OutReason", "ReadyState", "Readiness", "assess", "engine_state"]


class ReadyState(StrEnum):
    """The answer; the value is what ``GET /ready`` shows as ``status``."""

    READY = "ready"
    DEGRADED = "degraded"
    NOT_READY = "not ready"
    SHUTTING_DOWN = "shutting down"

    @property
    def label(self) -> str:
        """The value as a Prometheus label (``embed_gateway_ready{state=...}``)."""
        return self.value.replace(" ", "_")

    @property
    def http_status(self) -> int:
        return 200 if self in (ReadyState.READY, ReadyState.DEGRADED) else 503


class OutReason(StrEnum):
    """Why an engine cannot serve now."""

    START_FAILED = "start_failed"
    PARITY_FAILED = "parity_failed"
    PARITY_PENDING = "parity_pending"
    CIRCUIT_OPEN = "circuit_open"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class EngineState:
    """One engine as readiness sees it: able to serve now, or out with a reason."""

    available: bool
    reason: OutReason | None
    detail: str


def engine_state(entry: EngineEntry) -> EngineState:
    """Whether ``entry`` can serve now, from its recorded state only (no health check here)."""
    health = entry.health_detail or ("ok" if entry.healthy else "not checked yet")
    if entry.start_error:
        return EngineState(False, OutReason.START_FAILED, f"failed to start: {entry.start_error}")
    if entry.parity is ParityStatus.FAILED:
        failing = "; ".join(r.detail for r in entry.parity_results.values() if not r.ok)
        return EngineState(False, OutReason.PARITY_FAILED, f"parity check failed: {failing}")
    if entry.parity is ParityStatus.PENDING:
        return EngineState(False, OutReason.PARITY_PENDING, f"waiting for its first parity check: {health}")
    if entry.breaker.is_open:
        reason = entry.breaker.snapshot().last_reason
        return EngineState(False, OutReason.CIRCUIT_OPEN, f"circuit open ({reason}): {health}")
    if entry.healthy is False:
        return EngineState(False, OutReason.UNHEALTHY, f"health check failed: {health}")
    return EngineState(True, None, health)


@dataclass(frozen=True, slots=True)
class Readiness:
    state: ReadyState
    engines: dict[str, EngineState]
    #: every task the configuration serves -> the engines able to serve it now, in route order
    tasks: dict[str, list[str]]
    #: tasks with no engine able to serve them now (any makes the answer ``not ready``)
    unserved: list[str]
    #: tasks still served, but not by the first engine of their route (their fast path is out)
    fast_path_lost: list[str]

    @property
    def out(self) -> list[str]:
        """Engines that cannot serve now."""
        return [n for n, e in self.engines.items() if not e.available]


def assess(snap: Snapshot, *, draining: bool = False) -> Readiness:
    """The readiness of ``snap`` (see the module docstring for the rule)."""
    engines = {name: engine_state(entry) for name, entry in snap.entries.items()}
    caps = snap.capabilities()
    tasks: dict[str, list[str]] = {}
    unserved: list[str] = []
    fast_path_lost: list[str] = []
    for key in ROUTE_KEYS:
        route = candidates(parse_task(key), snap.routes, caps)
        if not route:
            continue  # not a task this configuration serves (a 400 on request, not an outage)
        able = [n for n in route if engines[n].available]
        tasks[key] = able
        if not able:
            unserved.append(key)
        elif able[0] != route[0]:
            fast_path_lost.append(key)
    if draining:
        state = ReadyState.SHUTTING_DOWN
    elif unserved or not tasks:
        state = ReadyState.NOT_READY
    elif any(not e.available for e in engines.values()):
        state = ReadyState.DEGRADED
    else:
        state = ReadyState.READY
    return Readiness(state, engines, tasks, unserved, fast_path_lost)

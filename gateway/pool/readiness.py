"""Is this gateway ready to take traffic? The one rule, shared by ``GET /ready``, the admin view
and the metrics, so that a probe and a dashboard can never disagree about what ready means.

Why this rule: a load balancer (or Kubernetes) takes a replica whose readiness fails out of
service. If an optional fast path being out (a vLLM the parity guard keeps out, a dead vLLM, an
open circuit) failed readiness, the only replica would be taken out while the exact engine still
serves every task: an outage caused by an optimisation. So readiness asks one question per task:

    does every task the configuration serves have at least one engine able to serve it *now*?

* yes, and every engine is in: ``ready`` (HTTP 200);
* yes, but some engine is out: ``degraded`` (HTTP 200) — the body says which engine is out and
  why, and which tasks lost their first (fast) engine; the metrics give the state and how many
  engines each task has left;
* no, some task has no engine able to serve it: ``not ready`` (HTTP 503);
* the gateway is draining for shutdown: ``shutting down`` (HTTP 503).

"Which engines serve which task" is the routing policy's own
:func:`gateway.serving.routing.candidates`; "able now" is :func:`availability`, computed from the
live state the supervisor keeps (monitor, parity guard, circuit breakers). Nothing here does I/O:
answering ``GET /ready`` never probes an engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.contract import task_of_key
from gateway.pool.parity import ParityStatus
from gateway.pool.routing import candidates
from gateway.pool.snapshot import Member, Snapshot
from gateway.pool.state import EngineState

__all__ = ["Availability", "OutReason", "ReadyState", "Readiness", "assess", "availability"]


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
class Availability:
    """One engine as readiness sees it: able to serve now, or out with a reason."""

    available: bool
    reason: OutReason | None
    detail: str


def availability(member: Member, state: EngineState) -> Availability:
    """Whether ``member`` can serve now, from its recorded state only (no health check here)."""
    health = state.health_detail or ("ok" if state.healthy else "not checked yet")
    if member.start_error:
        return Availability(False, OutReason.START_FAILED, f"failed to start: {member.start_error}")
    if state.parity is ParityStatus.FAILED:
        failing = "; ".join(r.detail for r in state.parity_results.values() if not r.ok)
        return Availability(False, OutReason.PARITY_FAILED, f"parity check failed: {failing}")
    if state.parity is ParityStatus.PENDING:
        return Availability(False, OutReason.PARITY_PENDING, f"waiting for its first parity check: {health}")
    if state.breaker.is_open:
        reason = state.breaker.snapshot().last_reason
        return Availability(False, OutReason.CIRCUIT_OPEN, f"circuit open ({reason}): {health}")
    if state.healthy is False:
        return Availability(False, OutReason.UNHEALTHY, f"health check failed: {health}")
    return Availability(True, None, health)


@dataclass(frozen=True, slots=True)
class Readiness:
    state: ReadyState
    engines: dict[str, Availability]
    #: every task the configuration serves -> the engines able to serve it now, in route order
    tasks: dict[str, list[str]]
    #: tasks with no engine able to serve them now (any makes the answer ``not ready``)
    unserved: list[str]
    #: tasks still served, but not by the first engine of their route (their fast path is out)
    fast_path_lost: list[str]
    #: per model: ``ready``, ``degraded`` (an engine of it is out, every task still served) or
    #: ``not ready`` (a task of it has no engine)
    models: dict[str, str] = field(default_factory=dict)

    @property
    def out(self) -> list[str]:
        """Engines that cannot serve now."""
        return [n for n, e in self.engines.items() if not e.available]


def assess(snap: Snapshot, states: Mapping[str, EngineState], *, draining: bool = False) -> Readiness:
    """The readiness of ``snap`` given each engine's live state (see the module docstring for the rule)."""
    engines = {name: availability(member, states[name]) for name, member in snap.members.items()}
    tasks: dict[str, list[str]] = {}
    unserved: list[str] = []
    fast_path_lost: list[str] = []
    models: dict[str, str] = {}
    for model in snap.models:
        caps = snap.capabilities(model)
        routes = snap.model_routes(model)
        model_unserved, model_tasks = False, 0
        for key in routes:
            route = candidates(task_of_key(key), routes, caps)
            if not route:
                continue  # not a task this configuration serves (a 400 on request, not an outage)
            # the first model's tasks by their own key (one model: as before models existed); others' as model/task
            label = key if model == snap.first_model else f"{model}/{key}"
            able = [n for n in route if engines[n].available]
            tasks[label] = able
            model_tasks += 1
            if not able:
                unserved.append(label)
                model_unserved = True
            elif able[0] != route[0]:
                fast_path_lost.append(label)
        if model_unserved or not model_tasks:
            models[model] = ReadyState.NOT_READY.value
        elif any(not engines[n].available for n in caps):
            models[model] = ReadyState.DEGRADED.value
        else:
            models[model] = ReadyState.READY.value
    if draining:
        state = ReadyState.SHUTTING_DOWN
    elif unserved or not tasks:
        state = ReadyState.NOT_READY
    elif any(not e.available for e in engines.values()):
        state = ReadyState.DEGRADED
    else:
        state = ReadyState.READY
    return Readiness(state, engines, tasks, unserved, fast_path_lost, models)

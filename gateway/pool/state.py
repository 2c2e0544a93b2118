"""What changes while an engine runs, kept apart from the immutable snapshots that name it.

One :class:`EngineState` per engine instance, owned by the supervisor and keyed by the engine
object: an engine kept across a reload keeps its breaker and parity history; a rebuilt one (a new
object under the same name) starts over, while the old one drains with its own state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from gateway.contract import Health, Task
from gateway.pool.breaker import CircuitBreaker
from gateway.pool.parity import ParityResult, ParityStatus

__all__ = ["EngineState"]


@dataclass(eq=False)
class EngineState:
    breaker: CircuitBreaker
    parity: ParityStatus = ParityStatus.NOT_REQUIRED
    #: tasks the guard compared it on when its status was last set (a new task means a new check)
    parity_tasks: frozenset[Task | None] = frozenset()
    #: the last check's result per route key
    parity_results: dict[str, ParityResult] = field(default_factory=dict)
    parity_checked_at: float | None = None
    #: outcome of the last health check (start-up, monitor round, probe); None before the first.
    #: A parity pass or a served request also counts as "answering".
    healthy: bool | None = None
    #: what that check said (``Health.detail``); ``GET /ready`` shows it without checking again
    health_detail: str = ""
    #: requests calling this engine now
    in_flight: int = 0

    @property
    def held_back(self) -> bool:
        """Kept out of every route by the parity guard (not checked yet, or failed)."""
        return self.parity in (ParityStatus.PENDING, ParityStatus.FAILED)

    def record_health(self, health: Health) -> None:
        """Remember a health check's outcome (readiness and the metrics read it, never re-check)."""
        self.healthy, self.health_detail = health.ok, health.detail

    def record_answered(self) -> None:
        """The engine just served an embedding (a request, a probe, a parity check): it is up."""
        self.breaker.record_success()
        if self.healthy is not True:
            self.healthy, self.health_detail = True, "ok"

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Count one request on this engine while it calls it."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

"""A circuit breaker per engine: a small state machine with an injected clock.

Why: an engine that keeps failing with retryable errors (vLLM killed, unreachable, saturated)
costs every request a failed attempt before it falls over. After ``failure_threshold``
consecutive retryable failures the circuit opens and :func:`gateway.serving.routing.plan` skips the engine
(never the last one able to serve a task). Requests never probe an open engine; the monitor does
(``gateway.pool.supervisor``), and a successful probe closes the circuit again.

    closed --(threshold consecutive failures | trip)--> open --(successful probe | success)--> closed

The clock is a constructor argument, so the transitions are unit-tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["BreakerSnapshot", "CircuitBreaker", "CircuitState"]


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    state: CircuitState
    consecutive_failures: int
    #: clock time the circuit opened; ``None`` while closed
    opened_at: float | None
    times_opened: int
    last_reason: str


class CircuitBreaker:
    def __init__(self, failure_threshold: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.failure_threshold = failure_threshold
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at: float | None = None
        self._times_opened = 0
        self._reason = ""

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def is_open(self) -> bool:
        return self._state is CircuitState.OPEN

    def record_success(self) -> None:
        """A request or probe succeeded: the engine works, whatever happened before."""
        self._failures = 0
        self._state = CircuitState.CLOSED
        self._opened_at = None

    def record_failure(self, reason: str = "") -> bool:
        """A retryable failure. Returns True when this failure opened the circuit."""
        self._failures += 1
        self._reason = reason or self._reason
        if self._state is CircuitState.CLOSED and self._failures >= self.failure_threshold:
            self._open()
            return True
        return False

    def trip(self, reason: str) -> bool:
        """Open at once (a failed health probe: no need to wait for requests to fail).
        Returns True when the circuit was closed before."""
        self._reason = reason
        if self._state is CircuitState.OPEN:
            return False
        self._open()
        return True

    def snapshot(self) -> BreakerSnapshot:
        return BreakerSnapshot(self._state, self._failures, self._opened_at, self._times_opened, self._reason)

    def open_for(self) -> float:
        """Seconds the circuit has been open (0 while closed)."""
        return 0.0 if self._opened_at is None else max(0.0, self._clock() - self._opened_at)

    def _open(self) -> None:
        self._state = CircuitState.OPEN
        self._opened_at = self._clock()
        self._times_opened += 1

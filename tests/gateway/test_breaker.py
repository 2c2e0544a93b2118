"""The circuit breaker's state machine, driven by an injected clock."""

from __future__ import annotations

import pytest

from gateway.pool.breaker import CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_consecutive_failures_only() -> None:
    b = CircuitBreaker(3, clock=Clock())
    assert b.record_failure("unavailable") is False
    assert b.record_failure("unavailable") is False
    b.record_success()  # a success in between resets the count
    assert b.record_failure() is False and b.record_failure() is False
    assert b.state is CircuitState.CLOSED
    assert b.record_failure("timeout") is True
    assert b.is_open and b.snapshot().last_reason == "timeout"
    assert b.record_failure() is False  # already open: reported once


def test_success_closes_and_open_time_comes_from_the_clock() -> None:
    clock = Clock()
    b = CircuitBreaker(1, clock=clock)
    assert b.open_for() == 0.0
    b.record_failure("x")
    clock.now += 7.5
    assert b.open_for() == 7.5
    b.record_success()
    assert b.state is CircuitState.CLOSED and b.open_for() == 0.0
    assert b.snapshot().times_opened == 1 and b.snapshot().consecutive_failures == 0


def test_trip_opens_at_once_and_reports_only_the_transition() -> None:
    b = CircuitBreaker(5, clock=Clock())
    assert b.trip("health: unreachable") is True
    assert b.trip("health: unreachable") is False
    assert b.is_open and b.snapshot().opened_at == 100.0


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0)

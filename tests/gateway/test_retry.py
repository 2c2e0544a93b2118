"""The one retry policy: backoff arithmetic and the deadline stop (no sleeping: a fake clock)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.config import RetrySettings
from gateway.contract import EngineOverloadedError, EngineTimeoutError, EngineUnavailableError, InvalidRequestError
from gateway.serving.retry import backoff, retrying


def test_backoff_doubles_honours_retry_after_and_caps() -> None:
    s = RetrySettings(attempts=5, initial_backoff=0.1, max_backoff=1.0)
    assert [backoff(n, s) for n in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert backoff(1, s, retry_after=0.5) == 0.5
    assert backoff(1, s, retry_after=30) == 1.0  # a long Retry-After is the client's business


def _run(settings: RetrySettings, errors: list[Exception], **kw: object) -> tuple[int, BaseException | None]:
    calls = 0

    async def go() -> None:
        nonlocal calls
        async for attempt in retrying(settings, **kw):  # type: ignore[arg-type]
            with attempt:
                calls += 1
                if calls <= len(errors):
                    raise errors[calls - 1]

    try:
        asyncio.run(go())
    except Exception as exc:
        return calls, exc
    return calls, None


def test_retries_unavailable_and_timeout_only() -> None:
    zero = RetrySettings(attempts=3, initial_backoff=0, max_backoff=0)
    assert _run(zero, [EngineUnavailableError("x"), EngineTimeoutError("y")]) == (3, None)
    calls, err = _run(zero, [EngineOverloadedError("full", retry_after=0)])
    assert calls == 1 and isinstance(err, EngineOverloadedError)  # 429 at once: the client backs off
    calls, err = _run(zero, [InvalidRequestError("bad")])
    assert calls == 1 and isinstance(err, InvalidRequestError)
    calls, err = _run(zero, [EngineUnavailableError(str(i)) for i in range(5)])
    assert calls == 3 and isinstance(err, EngineUnavailableError) and err.message == "2"  # the last error


def test_no_wait_runs_past_the_deadline() -> None:
    s = RetrySettings(attempts=10, initial_backoff=5, max_backoff=5)
    calls, err = _run(s, [EngineUnavailableError("x")] * 10, deadline=103.0, clock=lambda: 100.0)
    assert calls == 1 and isinstance(err, EngineUnavailableError)  # waiting 5 s would pass the deadline


@pytest.mark.parametrize("attempts", [1, 2])
def test_attempts_counts_the_first_try(attempts: int) -> None:
    calls, _ = _run(RetrySettings(attempts=attempts, initial_backoff=0, max_backoff=0), [EngineUnavailableError("x")] * 5)
    assert calls == attempts

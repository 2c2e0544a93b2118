"""The one retry policy: backoff arithmetic and the deadline stop (no sleeping: a fake clock).

Every policy test runs twice: through tenacity's loop (``retrying``) and through ``call_retrying``,
whose first try skips tenacity; both must behave the same.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.config import RetrySettings
from gateway.contract import EngineOverloadedError, EngineTimeoutError, EngineUnavailableError, InvalidRequestError
from collections.abc import Callable

from gateway.serving.retry import backoff, call_retrying, retrying


def test_backoff_doubles_honours_retry_after_and_caps() -> None:
    s = RetrySettings(attempts=5, initial_backoff=0.1, max_backoff=1.0)
    assert [backoff(n, s) for n in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert backoff(1, s, retry_after=0.5) == 0.5
    assert backoff(1, s, retry_after=30) == 1.0  # a long Retry-After is the client's business


Outcome = tuple[int, BaseException | None]


def _run(settings: RetrySettings, errors: list[Exception], **kw: object) -> Outcome:
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


def _call(settings: RetrySettings, errors: list[Exception], **kw: object) -> Outcome:
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls <= len(errors):
            raise errors[calls - 1]
        return "done"

    try:
        assert asyncio.run(call_retrying(attempt, settings, **kw)) == "done"  # type: ignore[arg-type]
    except Exception as exc:
        return calls, exc
    return calls, None


drivers = pytest.mark.parametrize("run", [_run, _call], ids=["retrying", "call_retrying"])


@drivers
def test_retries_unavailable_and_timeout_only(run: Callable[..., Outcome]) -> None:
    zero = RetrySettings(attempts=3, initial_backoff=0, max_backoff=0)
    assert run(zero, [EngineUnavailableError("x"), EngineTimeoutError("y")]) == (3, None)
    calls, err = run(zero, [EngineOverloadedError("full", retry_after=0)])
    assert calls == 1 and isinstance(err, EngineOverloadedError)  # 429 at once: the client backs off
    calls, err = run(zero, [InvalidRequestError("bad")])
    assert calls == 1 and isinstance(err, InvalidRequestError)
    calls, err = run(zero, [EngineUnavailableError(str(i)) for i in range(5)])
    assert calls == 3 and isinstance(err, EngineUnavailableError) and err.message == "2"  # the last error


@drivers
def test_no_wait_runs_past_the_deadline(run: Callable[..., Outcome]) -> None:
    s = RetrySettings(attempts=10, initial_backoff=5, max_backoff=5)
    calls, err = run(s, [EngineUnavailableError("x")] * 10, deadline=103.0, clock=lambda: 100.0)
    assert calls == 1 and isinstance(err, EngineUnavailableError)  # waiting 5 s would pass the deadline


@drivers
@pytest.mark.parametrize("attempts", [1, 2])
def test_attempts_counts_the_first_try(run: Callable[..., Outcome], attempts: int) -> None:
    calls, _ = run(RetrySettings(attempts=attempts, initial_backoff=0, max_backoff=0), [EngineUnavailableError("x")] * 5)
    assert calls == attempts


@drivers
def test_each_retry_is_reported_once(run: Callable[..., Outcome]) -> None:
    seen: list[str] = []
    zero = RetrySettings(attempts=3, initial_backoff=0, max_backoff=0)
    calls, err = run(zero, [EngineUnavailableError("a"), EngineTimeoutError("b")], on_retry=lambda e: seen.append(e.message))
    assert (calls, err, seen) == (3, None, ["a", "b"])

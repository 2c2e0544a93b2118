"""The one retry policy (tenacity), built from ``retry:`` in the settings.

Why only one, and only at the end of a route: while another engine can take a request, falling
over at once is faster than waiting to retry; retrying makes sense only when the failing engine
is the last one able to serve the task. Only unavailable and timeout errors are retried;
"overloaded" is not: a full queue is answered at once with 429 and Retry-After, so clients back off
instead of the server holding their connections exactly when capacity is short. An engine's
``Retry-After`` is honoured up to ``max_backoff``, and no wait runs past the request's deadline.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_any
from tenacity.stop import stop_base

from gateway.config import RetrySettings
from gateway.contract import EngineOverloadedError, RetryableError, is_retryable

__all__ = ["backoff", "call_retrying", "retrying", "worth_retrying"]

T = TypeVar("T")


def worth_retrying(err: BaseException) -> bool:
    """Retryable, and not an overload (see the module docstring)."""
    return is_retryable(err) and not isinstance(err, EngineOverloadedError)


def backoff(attempt: int, settings: RetrySettings, retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    wait = settings.initial_backoff * 2 ** (attempt - 1)
    if retry_after is not None:
        wait = max(wait, retry_after)
    return float(min(wait, settings.max_backoff))


def retrying(
    settings: RetrySettings,
    *,
    deadline: float | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncRetrying:
    """``async for attempt in retrying(...): with attempt: ...`` — re-raises the last error."""

    def wait(state: RetryCallState) -> float:
        err = state.outcome.exception() if state.outcome is not None else None
        after = err.retry_after if isinstance(err, RetryableError) else None
        return backoff(state.attempt_number, settings, after)

    class past_deadline(stop_base):  # noqa: N801 - tenacity's naming
        """Stop when the next wait would end after the request's deadline."""

        def __call__(self, state: RetryCallState) -> bool:
            return deadline is not None and clock() + wait(state) >= deadline

    def before_sleep(state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome is not None else None
        if on_retry is not None and err is not None:
            on_retry(err)

    return AsyncRetrying(
        stop=stop_any(stop_after_attempt(settings.attempts), past_deadline()),
        wait=wait,
        retry=retry_if_exception(worth_retrying),
        before_sleep=before_sleep,
        reraise=True,
    )


async def call_retrying(
    attempt: Callable[[], Awaitable[T]],
    settings: RetrySettings,
    *,
    deadline: float | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``await attempt()``, retried per :func:`retrying`.

    The first try runs outside tenacity: its per-call machinery (a state object, futures, a policy
    per request) costs more CPU than the whole loopback call to a vLLM next door, and nearly every
    call succeeds at once. A failure worth retrying is then replayed into :func:`retrying` as its
    first attempt, so its waits, stops and ``on_retry`` are exactly the policy's.
    """
    try:
        return await attempt()
    except Exception as err:  # noqa: BLE001 - anything else is never retried and propagates as is
        if not worth_retrying(err):
            raise
        first: BaseException | None = err

    async def replay_first() -> T:
        nonlocal first
        if first is not None:
            failed, first = first, None
            raise failed
        return await attempt()

    async for tried in retrying(settings, deadline=deadline, on_retry=on_retry, clock=clock):
        with tried:
            return await replay_first()
    raise AssertionError("unreachable: tenacity re-raises the last error")

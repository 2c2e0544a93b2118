"""When to retry a gateway request and how long to wait: pure, so it is tested without a server.

The gateway answers overload with 429 and unavailability with 503/504, each with ``Retry-After``
(seconds). A well-behaved bulk client waits at least that long; without the header it backs off
exponentially. Everything else (400, 404, 413, 500) is final: retrying cannot fix the request.
"""

from __future__ import annotations

from dataclasses import dataclass, field


__all__ = ["RETRY_STATUSES", "RetryPolicy", "RetryStats"]

#: Statuses worth another attempt (the OpenAI SDK retries the same set, minus 409).
RETRY_STATUSES: frozenset[int] = frozenset({408, 429, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_retries`` extra attempts; waits ``Retry-After`` (capped at ``max_delay``) or backs off."""

    max_retries: int = 8
    base_delay: float = 0.5
    max_delay: float = 60.0

    def should_retry(self, status: int | None, attempt: int) -> bool:
        """``status`` None = a transport error (connection refused/reset, read timeout)."""
        return attempt < self.max_retries and (status is None or status in RETRY_STATUSES)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 0)."""
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        return min(self.base_delay * 2**attempt, self.max_delay)


@dataclass(slots=True)
class RetryStats:
    """What retrying cost, for progress reports (``embed-gateway embed`` prints it)."""

    retries: int = 0
    waited_seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)

    def record(self, status: int | None, waited: float) -> None:
        self.retries += 1
        self.waited_seconds += waited
        key = status if status is not None else 0
        self.statuses[key] = self.statuses.get(key, 0) + 1

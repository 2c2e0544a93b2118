"""Retry policy and Retry-After parsing: pure, no server."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gateway.client import RetryPolicy, RetryStats, parse_retry_after


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1", 1.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", 0.0), (None, None), ("", None), ("soon", None), ("nan", None)],
)
def test_parse_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:07 GMT", now=now) == pytest.approx(7.0)
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0


def test_policy_retries_only_transient_statuses_and_stops() -> None:
    policy = RetryPolicy(max_retries=2)
    for status in (429, 503, 504, 502, 408, None):
        assert policy.should_retry(status, 0) and policy.should_retry(status, 1)
        assert not policy.should_retry(status, 2)
    for status in (400, 401, 404, 413, 500):
        assert not policy.should_retry(status, 0)


def test_policy_delay_honours_retry_after_then_backs_off() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=10)
    assert policy.delay(0, 3.0) == 3.0
    assert policy.delay(5, 120.0) == 10  # capped
    assert [policy.delay(a, None) for a in range(6)] == [0.5, 1, 2, 4, 8, 10]


def test_stats_count_by_status() -> None:
    stats = RetryStats()
    stats.record(429, 1.0)
    stats.record(429, 2.0)
    stats.record(None, 0.5)
    assert (stats.retries, stats.waited_seconds, stats.statuses) == (3, 3.5, {429: 2, 0: 1})

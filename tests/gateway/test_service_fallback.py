"""Service behaviour that needs scripted engines: readiness, fallback, start-up failures, the circuit
breaker, the retry policy and the fallback metrics."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import numpy as np
import pytest

from gateway.config import load_settings
from gateway.contract import (
    EmbedJob,
    EngineOverloadedError,
    EngineTimeoutError,
    EngineUnavailableError,
    InvalidRequestError,
    Task,
)
from tests.support.fakes import FakeEngine, fake_vector
from tests.support.server import live_server


def settings():  # type: ignore[no-untyped-def]
    return load_settings()


def test_ready_is_degraded_naming_the_engine_that_is_out() -> None:
    # degraded, not 503: "good" serves every task, so the replica stays in service
    good, bad = FakeEngine("good"), FakeEngine("bad", healthy=False)
    with live_server(settings(), {"good": good, "bad": bad}) as s:
        r = httpx.get(s.url + "/ready")
    assert r.status_code == 200 and r.json()["status"] == "degraded"
    assert r.json()["not_ready"] == ["bad"]
    assert r.json()["engines"]["good"]["ready"] is True


def test_retryable_failure_falls_back_to_the_next_engine() -> None:
    first = FakeEngine("first", fail_with=lambda job: EngineUnavailableError("down", engine="first"))
    second = FakeEngine("second")
    with live_server(settings(), {"first": first, "second": second}) as s:
        r = httpx.post(s.url + "/v1/embeddings", json={"input": ["a b", "c"], "normalized": False})
    assert r.status_code == 200 and r.headers["x-embed-engine"] == "second"
    got = np.array([d["embedding"] for d in r.json()["data"]])
    np.testing.assert_allclose(got[0], fake_vector("a b", Task.TEXT_MATCHING, 64), rtol=1e-6)
    assert len(first.calls) == 1 and len(second.calls) == 1


def test_overload_everywhere_is_429_with_retry_after() -> None:
    busy = FakeEngine("busy", fail_with=lambda job: EngineOverloadedError("full", engine="busy", retry_after=3.2))
    with live_server(settings(), {"busy": busy}) as s:
        r = httpx.post(s.url + "/v1/embeddings", json={"input": "x"})
    assert r.status_code == 429 and r.headers["retry-after"] == "4"
    assert r.json()["error"]["type"] == "rate_limit_error"


def test_non_retryable_error_does_not_fall_back() -> None:
    first = FakeEngine("first", fail_with=lambda job: InvalidRequestError("bad", param="input"))
    second = FakeEngine("second")
    with live_server(settings(), {"first": first, "second": second}) as s:
        r = httpx.post(s.url + "/v1/embeddings", json={"input": "x"})
    assert r.status_code == 400 and second.calls == []


def test_unexpected_engine_exception_is_a_clean_500() -> None:
    class Broken(FakeEngine):
        async def embed(self, job):  # type: ignore[no-untyped-def]
            raise RuntimeError("secret /internal/path")

    with live_server(settings(), {"x": Broken("x")}) as s:
        r = httpx.post(s.url + "/v1/embeddings", json={"input": "x"})
    assert r.status_code == 500
    assert r.json()["error"] == {
        "message": "internal server error", "type": "server_error", "param": None, "code": "internal_error"
    }
    assert "secret" not in r.text


def test_one_engine_failing_to_start_leaves_the_other_serving() -> None:
    dead = FakeEngine("dead", start_error=RuntimeError("no weights"))
    live = FakeEngine("live")
    with live_server(settings(), {"dead": dead, "live": live}) as s:
        assert httpx.post(s.url + "/v1/embeddings", json={"input": "x"}).status_code == 200
        ready = httpx.get(s.url + "/ready")  # degraded, not 503: "live" serves every task
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["engines"]["dead"]["reason"] == "start_failed"


def test_no_engine_starting_is_a_start_up_failure() -> None:
    with pytest.raises(RuntimeError):
        with live_server(settings(), {"dead": FakeEngine("dead", start_error=RuntimeError("x"))}):
            pass


def test_client_disconnect_cancels_the_engine_work() -> None:
    """A client that gives up must not leave its work running on the engine."""
    import asyncio

    cancelled = []

    class Slow(FakeEngine):
        async def embed(self, job):  # type: ignore[no-untyped-def]
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(job)
                raise
            return await super().embed(job)

    with live_server(settings(), {"slow": Slow("slow")}) as s:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(s.url + "/v1/embeddings", json={"input": "x"}, timeout=0.5)
        for _ in range(50):
            if cancelled:
                break
            import time

            time.sleep(0.05)
    assert len(cancelled) == 1


# --------------------------------------------------------------------------- breaker, retries, metrics


def failing(times: int | None, err: Callable[[], Exception]) -> Callable[[EmbedJob], Exception | None]:
    """fail_with for a FakeEngine: the first ``times`` calls fail (None = every call)."""
    calls = {"n": 0}

    def fail(job: EmbedJob) -> Exception | None:
        calls["n"] += 1
        return err() if times is None or calls["n"] <= times else None

    return fail  # type: ignore[return-value]


def quick(**over: object):  # type: ignore[no-untyped-def]
    """Settings with retry waits of zero (no sleeping in tests) and a monitor that stays out of the way."""
    base: dict[str, object] = {"retry": {"initial_backoff": 0, "max_backoff": 0}, "breaker": {"probe_interval": 3600}}
    return load_settings(**(base | over))


def post(s, **body: object) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(s.url + "/v1/embeddings", json={"input": "x", **body}, timeout=30)


def test_circuit_opens_after_threshold_and_requests_skip_the_engine() -> None:
    first = FakeEngine("first", fail_with=failing(None, lambda: EngineUnavailableError("down", engine="first")))
    second = FakeEngine("second")
    with live_server(quick(breaker={"failure_threshold": 2, "probe_interval": 3600}), {"first": first, "second": second}) as s:
        served = [post(s).headers["x-embed-engine"] for _ in range(5)]
        m = s.app.state.metrics
        assert served == ["second"] * 5
        assert len(first.calls) == 2  # out after two failures; the other three went straight to "second"
        assert m.value("embed_gateway_circuit_opened_total", engine="first") == 1
        assert m.value("embed_gateway_fallbacks_total", task="text-matching", engine="first", reason="engine_unavailable") == 2
        ready = httpx.get(s.url + "/ready").json()
        assert ready["engines"]["first"]["circuit"] == "open" and ready["not_ready"] == ["first"]


def test_breaker_never_takes_out_the_last_engine() -> None:
    only = FakeEngine("only", fail_with=failing(None, lambda: EngineUnavailableError("down", engine="only")))
    with live_server(quick(retry={"attempts": 1}, breaker={"failure_threshold": 1, "probe_interval": 3600}), {"only": only}) as s:
        assert [post(s).status_code for _ in range(3)] == [503, 503, 503]
    assert len(only.calls) == 3  # still tried every time


def test_last_engine_is_retried_by_the_policy_and_recovers() -> None:
    flaky = FakeEngine("flaky", fail_with=failing(2, lambda: EngineTimeoutError("slow", engine="flaky")))
    with live_server(quick(retry={"attempts": 3, "initial_backoff": 0, "max_backoff": 0}), {"flaky": flaky}) as s:
        r = post(s)
        assert r.status_code == 200 and r.headers["x-embed-engine"] == "flaky"
        assert s.app.state.metrics.value("embed_gateway_retries_total", task="text-matching", engine="flaky", reason="timeout") == 2
    assert len(flaky.calls) == 3


def test_retries_stop_after_the_configured_attempts() -> None:
    down = FakeEngine("down", fail_with=failing(None, lambda: EngineUnavailableError("down", engine="down")))
    with live_server(quick(retry={"attempts": 4, "initial_backoff": 0, "max_backoff": 0}), {"down": down}) as s:
        assert post(s).status_code == 503
    assert len(down.calls) == 4


def test_overload_is_answered_at_once_not_retried() -> None:
    full = FakeEngine("full", fail_with=failing(None, lambda: EngineOverloadedError("full", engine="full", retry_after=3)))
    with live_server(quick(retry={"attempts": 4}), {"full": full}) as s:
        r = post(s)
        assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert len(full.calls) == 1


def test_no_retry_while_another_engine_can_serve() -> None:
    first = FakeEngine("first", fail_with=failing(1, lambda: EngineUnavailableError("blip", engine="first")))
    second = FakeEngine("second")
    with live_server(quick(retry={"attempts": 5}), {"first": first, "second": second}) as s:
        assert post(s).headers["x-embed-engine"] == "second"
    assert len(first.calls) == 1 and len(second.calls) == 1


def test_non_retryable_errors_are_not_retried() -> None:
    bad = FakeEngine("bad", fail_with=failing(None, lambda: InvalidRequestError("no", param="input")))
    with live_server(quick(retry={"attempts": 5}), {"bad": bad}) as s:
        assert post(s).status_code == 400
    assert len(bad.calls) == 1


def test_monitor_trips_an_unhealthy_engine_and_its_probe_brings_it_back() -> None:
    first, second = FakeEngine("first"), FakeEngine("second")
    with live_server(quick(), {"first": first, "second": second}) as s:
        monitor = s.app.state.monitor
        assert post(s).headers["x-embed-engine"] == "first"
        first.healthy = False
        s.call(monitor.tick())  # health check: not answering -> out before any request fails
        assert post(s).headers["x-embed-engine"] == "second"
        s.call(monitor.tick())  # probe: still unhealthy -> stays out
        assert post(s).headers["x-embed-engine"] == "second"
        first.healthy = True
        s.call(monitor.tick())  # probe: healthy and embeds -> back
        assert post(s).headers["x-embed-engine"] == "first"
        assert s.app.state.metrics.value("embed_gateway_circuit_opened_total", engine="first") == 1

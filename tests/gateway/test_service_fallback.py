"""Service behaviour that needs scripted engines: readiness, fallback, start-up failures."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from gateway.config import load_settings
from gateway.contract import EngineOverloadedError, EngineUnavailableError, InvalidRequestError, Task
from tests.support.fakes import FakeEngine, fake_vector
from tests.support.server import live_server


def settings():  # type: ignore[no-untyped-def]
    return load_settings()


def test_ready_is_503_naming_the_engine_that_is_not_ready() -> None:
    good, bad = FakeEngine("good"), FakeEngine("bad", healthy=False)
    with live_server(settings(), {"good": good, "bad": bad}) as s:
        r = httpx.get(s.url + "/ready")
    assert r.status_code == 503
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
        assert httpx.get(s.url + "/ready").status_code == 503


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

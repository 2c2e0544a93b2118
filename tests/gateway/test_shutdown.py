"""Graceful shutdown through the gateway's own server (what SIGTERM runs): stop accepting, let
in-flight requests finish within ``server.shutdown_grace``, fail what is left with a 503 (never a
cut connection or a hang), close the engines."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.config import load_settings
from tests.support.fakes import HeldEngine
from tests.support.server import LiveServer


def wait_until(condition, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.02)


def fire(url: str, n: int, results: list[httpx.Response | Exception], **body: object) -> list[threading.Thread]:
    def one() -> None:
        try:
            results.append(httpx.post(url + "/v1/embeddings", json={"input": "x", **body}, timeout=30))
        except httpx.HTTPError as exc:
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def test_sigterm_stops_accepting_and_lets_in_flight_requests_finish() -> None:
    engine = HeldEngine()
    s = LiveServer(load_settings(server={"shutdown_grace": 20}), {"held": engine}).start()
    results: list[httpx.Response | Exception] = []
    threads = fire(s.url, 3, results)
    wait_until(lambda: engine.entered == 3)
    s.sigterm()
    wait_until(lambda: s.app.state.gate.draining)
    with pytest.raises(httpx.ConnectError):  # the listener is closed: new clients go elsewhere
        httpx.get(s.url + "/health", timeout=2)
    assert not engine.closed  # in-flight work still has its engine
    assert s.loop is not None
    s.loop.call_soon_threadsafe(engine.release.set)
    for t in threads:
        t.join(timeout=20)
    assert [getattr(r, "status_code", r) for r in results] == [200, 200, 200]
    s.thread.join(timeout=20)
    assert not s.thread.is_alive() and engine.closed


def test_work_still_running_after_the_grace_period_gets_503_at_once(original_dir: Path) -> None:
    """The real HF engine with its worker wedged (a scripted fault): after the grace period the
    engines are closed, which answers the running batch and the queued work with 503."""
    settings = load_settings(
        engines={"hf": {"model": str(original_dir), "device": "cpu", "max_batch_requests": 1}},
        server={"shutdown_grace": 1.0},
        cache={"memory_bytes": 0},  # three identical requests must reach the engine (no single flight)
    )
    s = LiveServer(settings).start()
    engine = s.app.state.pool.current.members["hf"].engine
    scheduler = engine._scheduler
    wedge = threading.Event()
    forward = scheduler._forward

    def wedged(payloads):  # type: ignore[no-untyped-def]
        wedge.wait(30)
        return forward(payloads)

    scheduler._forward = wedged
    results: list[httpx.Response | Exception] = []
    threads = fire(s.url, 3, results)
    wait_until(lambda: scheduler.queue_depth == 2)  # one on the (wedged) worker, two queued
    s.sigterm()
    for t in threads:
        t.join(timeout=20)
    assert len(results) == 3
    for r in results:
        assert isinstance(r, httpx.Response), r
        assert r.status_code == 503 and r.headers["retry-after"], r.text
        assert r.json()["error"]["code"] == "engine_unavailable"
    wedge.set()  # let the worker thread finish its pass so the engine can close
    s.thread.join(timeout=30)
    assert not s.thread.is_alive()
    assert engine._scheduler.problem == "closed"


def test_while_draining_ready_is_503_and_new_work_is_refused(original_dir: Path) -> None:
    s = LiveServer(load_settings(engines={"hf": {"model": str(original_dir), "device": "cpu"}})).start()
    try:
        ok = httpx.post(s.url + "/v1/embeddings", json={"input": "x"}, timeout=30)
        assert ok.status_code == 200 and httpx.get(s.url + "/ready").status_code == 200
        s.app.state.gate.draining = True  # what SIGTERM's first step does (uvicorn then closes the listener)
        ready = httpx.get(s.url + "/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "shutting down"
        r = httpx.post(s.url + "/v1/embeddings", json={"input": "x"}, timeout=30)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "shutting_down"
        assert httpx.get(s.url + "/health").status_code == 200  # still alive, just not taking work
        s.app.state.gate.draining = False
        again = httpx.post(s.url + "/v1/embeddings", json={"input": "x"}, timeout=30)
        np.testing.assert_allclose(again.json()["data"][0]["embedding"], ok.json()["data"][0]["embedding"], atol=1e-6)
    finally:
        s.stop()

"""Fault injection on the real app over real HTTP with the real HF engine (tiny checkpoint).

Faults a real engine cannot produce on demand are scripted into it: its worker is wedged (a
forward pass that waits on an event) or dies mid-batch (a BaseException on the worker thread).
A scripted fake engine stands in only where the fault IS the other engine (a backup to fall back
to, an engine that never answers). Each test asserts the outcome (fallback, 429, 503, 504), that
every client got an answer (nothing hung), and that every 200 carries the right vectors (nothing
lost or mixed up). The vLLM faults (killed and restarted under load) are in test_vllm_managed.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from gateway.config import load_settings
from gateway.contract import Task
from tests.support.fakes import FakeEngine, fake_vector
from tests.support.server import LiveServer, live_server

TEXTS = [f"fact number {i}: the user likes coffee with {i} sugars" for i in range(40)]


def hf_settings(original_dir: Path, **more: Any):  # type: ignore[no-untyped-def]
    hf = {"model": str(original_dir), "device": "cpu"} | more.pop("hf", {})
    # the cache off: every scripted fault must meet the requests that follow it at the engine
    base: dict[str, Any] = {"retry": {"initial_backoff": 0, "max_backoff": 0}, "breaker": {"probe_interval": 3600},
                            "cache": {"memory_bytes": 0}}
    return load_settings(engines={"hf": hf}, **(base | more))


def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.02)


class Worker:
    """Scripted faults on the HF engine's worker thread: wedge it, or make it die."""

    def __init__(self, server: LiveServer) -> None:
        self.scheduler = server.app.state.pool.current.members["hf"].engine._scheduler
        self.forward = self.scheduler._forward
        self.gate = threading.Event()
        self.gate.set()
        self.die_after: int | None = None
        self.calls = 0
        self.scheduler._forward = self._forward

    def _forward(self, payloads):  # type: ignore[no-untyped-def]
        self.gate.wait(60)
        self.calls += 1
        if self.die_after is not None and self.calls > self.die_after:
            raise WorkerDied()
        return self.forward(payloads)

    @contextmanager
    def wedged(self) -> Iterator[None]:
        self.gate.clear()
        try:
            yield
        finally:
            self.gate.set()


class WorkerDied(BaseException):
    """The worker thread dying mid-batch (not an ordinary exception: nothing inside catches it)."""


def post(server: LiveServer, texts: list[str] | str, timeout: float = 60, **body: Any) -> httpx.Response:
    return httpx.post(server.url + "/v1/embeddings", json={"input": texts, **body}, timeout=timeout)


def vectors(r: httpx.Response) -> np.ndarray:
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


def in_threads(n: int, fn: Callable[[int], Any]) -> Callable[[], list[Any]]:
    """Start ``fn(i)`` on ``n`` threads now; the returned callable waits for every result (or
    exception), in order, and fails if a client is still waiting (something hung)."""
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            out[i] = fn(i)
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()

    def results() -> list[Any]:
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a client is still waiting: something hung"
        return out

    return results


@pytest.fixture(scope="module")
def sequential(original_dir: Path) -> dict[str, np.ndarray]:
    """Each text's vector from one request at a time: what every response under faults must equal."""
    with live_server(hf_settings(original_dir)) as s:
        return {t: vectors(post(s, t))[0] for t in TEXTS}


@pytest.mark.parametrize("backup", [False, True], ids=["hf-only", "with-backup"])
def test_worker_crash_fails_pending_at_once_and_ready_says_so(original_dir, sequential, backup) -> None:  # type: ignore[no-untyped-def]
    # the backup's (fake) vectors are not the model's: no parity guard between them here
    settings = hf_settings(original_dir, hf={"max_batch_requests": 4}, parity={"enabled": False})
    engines: dict[str, Any] | None = None
    if backup:
        from engine_hf import HFEngine

        engines = {"hf": HFEngine(settings.engines.hf), "backup": FakeEngine("backup")}
    with live_server(settings, engines) as s:
        worker = Worker(s)
        worker.die_after = 2  # two batches go through, the third kills the worker
        with worker.wedged():  # let work pile up, so the crash finds a running batch AND a queue
            pending = in_threads(20, lambda i: post(s, TEXTS[2 * i : 2 * i + 2], timeout=60))
            wait_until(lambda: worker.scheduler.queue_depth >= 10)
        results = pending()
        assert all(isinstance(r, httpx.Response) for r in results), results
        statuses = [r.status_code for r in results]
        s.call(s.app.state.monitor.tick())  # the monitor's round finds the dead scheduler; /ready only reads
        ready = httpx.get(s.url + "/ready")
        assert ready.json()["not_ready"] == ["hf"]
        # with a backup every task is still served: degraded, and the replica stays in service
        assert (ready.status_code, ready.json()["status"]) == ((200, "degraded") if backup else (503, "not ready"))
        assert "scheduler died" in ready.json()["engines"]["hf"]["detail"]
        metrics = httpx.get(s.url + "/metrics").text
        assert 'embed_gateway_engine_healthy{engine="hf"} 0.0' in metrics
        for i, r in enumerate(results):
            if r.status_code == 200:
                engine = r.headers["x-embed-engine"]
                want = (sequential[t] if engine == "hf" else _fake(t) for t in TEXTS[2 * i : 2 * i + 2])
                np.testing.assert_allclose(vectors(r), np.stack(list(want)), atol=1e-5)
        if backup:  # nothing lost: what hf could not serve, the backup did
            assert statuses == [200] * 20
            assert sum(r.headers["x-embed-engine"] == "backup" for r in results) >= 1
            assert 'embed_gateway_fallbacks_total{engine="hf",reason="engine_unavailable",task="text-matching"}' in metrics
            assert post(s, TEXTS[0]).headers["x-embed-engine"] == "backup"
        else:
            assert set(statuses) <= {200, 503} and 503 in statuses
            failed = [r for r in results if r.status_code == 503]
            assert all(r.json()["error"]["code"] == "engine_unavailable" and r.headers["retry-after"] for r in failed)
            after = post(s, TEXTS[0])
            assert after.status_code == 503  # refused at once, not queued on a dead engine


def _fake(text: str) -> np.ndarray:
    v = fake_vector(text, Task.TEXT_MATCHING, 64)
    return v / np.linalg.norm(v)


def test_full_queue_is_429_with_retry_after_then_everything_queued_is_served(original_dir, sequential) -> None:  # type: ignore[no-untyped-def]
    settings = hf_settings(original_dir, hf={"max_queued_tokens": 60, "max_batch_requests": 1})
    with live_server(settings) as s:
        worker = Worker(s)
        sdk = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=8)
        sdk_result: list[Any] = []
        with worker.wedged():
            running = in_threads_async(lambda: post(s, TEXTS[0]))
            wait_until(lambda: worker.scheduler.queue_depth == 0 and worker.scheduler.batches == 0
                       and worker.scheduler._running)
            queued = in_threads_async(lambda: post(s, TEXTS[1:4]))  # 3 x ~16 tokens: fits in 60
            wait_until(lambda: worker.scheduler.queue_depth == 3)
            full = post(s, TEXTS[4:8])
            assert full.status_code == 429, full.text
            err = full.json()["error"]
            assert err["type"] == "rate_limit_error" and err["code"] == "overloaded"
            assert int(full.headers["retry-after"]) >= 1
            sdk_thread = threading.Thread(target=lambda: sdk_result.append(
                sdk.embeddings.create(model="jina-embeddings-v3", input=TEXTS[4:8], encoding_format="float")))
            sdk_thread.start()  # the SDK gets 429s and retries after Retry-After ...
            time.sleep(0.5)
        sdk_thread.join(timeout=60)  # ... until the queue drains
        got_running, got_queued = running(), queued()
        assert got_running.status_code == 200 and got_queued.status_code == 200
        np.testing.assert_allclose(vectors(got_running)[0], sequential[TEXTS[0]], atol=1e-5)
        np.testing.assert_allclose(vectors(got_queued), np.stack([sequential[t] for t in TEXTS[1:4]]), atol=1e-5)
        assert len(sdk_result) == 1
        np.testing.assert_allclose(np.array([d.embedding for d in sdk_result[0].data]),
                                   np.stack([sequential[t] for t in TEXTS[4:8]]), atol=1e-5)
        wait_until(lambda: worker.scheduler.queue_depth == 0)
        failures = s.app.state.metrics.value("embed_gateway_request_failures_total", route="/v1/embeddings",
                                             model="jina-embeddings-v3", task="text-matching", engine="hf",
                                             status="429", code="overloaded")
        assert failures >= 2  # the direct one and at least one of the SDK's tries


def in_threads_async(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Start ``fn`` on a thread now; the returned callable waits for its result."""
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(fn()))
    t.start()

    def result() -> Any:
        t.join(timeout=60)
        assert box, "the request never returned"
        return box[0]

    return result


def test_full_queue_falls_back_to_another_engine_before_429(original_dir, sequential) -> None:  # type: ignore[no-untyped-def]
    from engine_hf import HFEngine

    settings = hf_settings(original_dir, hf={"max_queued_tokens": 20, "max_batch_requests": 1},
                           parity={"enabled": False})
    backup = FakeEngine("backup")
    with live_server(settings, {"hf": HFEngine(settings.engines.hf), "backup": backup}) as s:
        worker = Worker(s)
        with worker.wedged():
            running = in_threads_async(lambda: post(s, TEXTS[0]))
            wait_until(lambda: bool(worker.scheduler._running))
            queued = in_threads_async(lambda: post(s, TEXTS[1]))
            wait_until(lambda: worker.scheduler.queue_depth == 1)
            r = post(s, TEXTS[2:4])
            assert r.status_code == 200 and r.headers["x-embed-engine"] == "backup"
            np.testing.assert_allclose(vectors(r), np.stack([_fake(t) for t in TEXTS[2:4]]), atol=1e-5)
        assert running().headers["x-embed-engine"] == "hf" and queued().headers["x-embed-engine"] == "hf"
        assert s.app.state.metrics.value("embed_gateway_fallbacks_total", task="text-matching", engine="hf",
                                         reason="overloaded") == 1


def test_deadline_drops_queued_work_from_the_real_queue(original_dir) -> None:  # type: ignore[no-untyped-def]
    settings = hf_settings(original_dir, hf={"max_batch_requests": 1}, limits={"request_timeout": 1.0})
    with live_server(settings) as s:
        worker = Worker(s)
        with worker.wedged():
            running = in_threads_async(lambda: post(s, TEXTS[0]))
            wait_until(lambda: bool(worker.scheduler._running))
            r = post(s, TEXTS[1:5])  # queued behind the wedged batch: its deadline passes in the queue
            assert r.status_code == 504 and r.headers["retry-after"] == "1"
            assert r.json()["error"]["code"] == "timeout"
            assert "limits.request_timeout = 1 s" in r.json()["error"]["message"]
            assert worker.scheduler.queue_depth == 0 and worker.scheduler.queued_tokens == 0  # dropped
        assert running().status_code == 504  # the wedged batch's own request timed out as well
        assert post(s, TEXTS[5]).status_code == 200  # the engine serves again once unwedged


def test_client_disconnect_withdraws_its_queued_work(original_dir, sequential) -> None:  # type: ignore[no-untyped-def]
    with live_server(hf_settings(original_dir, hf={"max_batch_requests": 1})) as s:
        worker = Worker(s)
        with worker.wedged():
            running = in_threads_async(lambda: post(s, TEXTS[0]))
            wait_until(lambda: bool(worker.scheduler._running))
            with pytest.raises(httpx.ReadTimeout):
                post(s, TEXTS[1:9], timeout=0.5)  # the client gives up while its 8 inputs are queued
            wait_until(lambda: worker.scheduler.queue_depth == 0)  # withdrawn, not left for nobody
            assert worker.scheduler.queued_tokens == 0
        ok = running()
        assert ok.status_code == 200
        np.testing.assert_allclose(vectors(ok)[0], sequential[TEXTS[0]], atol=1e-5)
        assert worker.calls == 1  # the abandoned inputs never reached the model


def test_a_slow_engine_times_out_then_its_circuit_opens_and_the_fallback_serves(original_dir, sequential) -> None:  # type: ignore[no-untyped-def]
    from engine_hf import HFEngine

    cancelled: list[str] = []

    class Slow(FakeEngine):
        async def embed(self, job):  # type: ignore[no-untyped-def]
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(job.request_id)
                raise
            return await super().embed(job)

    settings = hf_settings(original_dir, limits={"request_timeout": 0.5}, routes={"text-matching": ["slow", "hf"]},
                           breaker={"failure_threshold": 2, "probe_interval": 3600}, parity={"enabled": False})
    with live_server(settings, {"slow": Slow("slow"), "hf": HFEngine(settings.engines.hf)}) as s:
        first = [post(s, TEXTS[i], timeout=30) for i in range(2)]
        assert [r.status_code for r in first] == [504, 504]
        assert all(r.json()["error"]["code"] == "timeout" for r in first)
        assert len(cancelled) == 2  # the slow engine's work was cancelled, not left running
        third = post(s, TEXTS[2])
        assert third.status_code == 200 and third.headers["x-embed-engine"] == "hf"
        np.testing.assert_allclose(vectors(third)[0], sequential[TEXTS[2]], atol=1e-5)
        metrics = httpx.get(s.url + "/metrics").text
        assert 'embed_gateway_circuit_open{engine="slow"} 1.0' in metrics
        assert 'embed_gateway_circuit_opened_total{engine="slow"} 1.0' in metrics

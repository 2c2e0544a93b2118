"""Every configured limit, over real HTTP: a clear 4xx (or 504) in OpenAI's shape that names the
limit and the offending value, answered at once, never a 500 or a hang."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from prometheus_client import generate_latest
import pytest

from gateway.config import load_settings
from tests.support.fakes import FakeEngine, HeldEngine
from tests.support.server import LiveServer, live_server


def eventually(condition, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    """The front door records a request just after its response is sent: wait for it."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.02)


def assert_error(r: httpx.Response, status: int, code: str, *fragments: str) -> dict:  # type: ignore[type-arg]
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == code, err
    assert r.json()["detail"] == err["message"]  # Jina's clients read the message there
    for fragment in fragments:
        assert fragment in err["message"], err["message"]
    assert r.headers["x-request-id"]
    return err


@pytest.fixture(scope="module")
def hf(original_dir: Path) -> Iterator[LiveServer]:
    settings = load_settings(
        engines={"hf": {"model": str(original_dir), "device": "cpu", "max_input_tokens": 64}},
        limits={"max_tokens_per_request": 100, "max_inputs_per_request": 8, "max_body_bytes": 4096},
    )
    with live_server(settings) as s:
        yield s


def embed(s: LiveServer, timeout: float = 30, **body: object) -> httpx.Response:
    return httpx.post(s.url + "/v1/embeddings", json=body, timeout=timeout)


def test_too_many_inputs_names_the_limit_and_the_count(hf: LiveServer) -> None:
    err = assert_error(embed(hf, input=["a"] * 9), 400, "too_many_inputs", "9 items", "limits.max_inputs_per_request = 8")
    assert err["param"] == "input"


def test_token_total_over_the_limit_is_413_with_the_exact_count(hf: LiveServer, reference) -> None:  # type: ignore[no-untyped-def]
    texts = ["the user likes coffee in the morning and tea at night"] * 6
    n = sum(len(reference.token_ids(t, "text-matching")) for t in texts)
    assert n > 100
    err = assert_error(embed(hf, input=texts), 413, "too_many_tokens", f"has {n} tokens",
                       "limits.max_tokens_per_request = 100")
    assert err["type"] == "invalid_request_error" and err["param"] == "input"
    # the same count in usage when it fits
    ok = embed(hf, input=texts[:1])
    assert ok.status_code == 200 and ok.json()["usage"]["total_tokens"] == n // 6
    # late chunking counts the document
    assert_error(embed(hf, input=texts, late_chunking=True), 413, "too_many_tokens", "limits.max_tokens_per_request")
    chunked = httpx.post(hf.url + "/v1/chunk-embeddings", json={"input": " ".join(texts)}, timeout=30)
    assert_error(chunked, 413, "too_many_tokens")


def test_over_long_input_still_names_the_input(hf: LiveServer) -> None:
    assert_error(embed(hf, input=["ok", "word " * 80]), 400, "input_too_long", "input[1] has", "64")


def test_body_over_the_limit_is_413_before_it_is_read(hf: LiveServer) -> None:
    big = {"input": ["x" * 1000] * 5}
    err = assert_error(embed(hf, **big), 413, "payload_too_large", "limits.max_body_bytes = 4096", "bytes")
    assert err["type"] == "invalid_request_error"
    # a chunked body (no Content-Length) is counted as it arrives
    body = httpx.Request("POST", "/", json=big).content

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 500):
            yield body[i : i + 500]

    r = httpx.post(hf.url + "/v1/embeddings", content=chunks(), headers={"content-type": "application/json"}, timeout=30)
    assert_error(r, 413, "payload_too_large", "limits.max_body_bytes = 4096")
    small = httpx.Request("POST", "/", json={"input": ["chunked but small"]}).content
    r = httpx.post(hf.url + "/v1/embeddings", content=iter([small[:10], small[10:]]),
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    assert hf.call(_healthy(hf))


async def _healthy(s: LiveServer) -> bool:
    return bool((await s.app.state.pool.current.members["hf"].engine.check_health()).ok)


def test_concurrent_requests_over_the_limit_get_429_at_once() -> None:
    engine = HeldEngine()
    settings = load_settings(limits={"max_concurrent_requests": 3})
    with live_server(settings, {"held": engine}) as s:
        results: list[httpx.Response] = []
        threads = [threading.Thread(target=lambda: results.append(embed(s, input="x"))) for _ in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while engine.entered < 3:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        err = assert_error(embed(s, input="x"), 429, "too_many_concurrent_requests",
                           "limits.max_concurrent_requests = 3")
        assert err["type"] == "rate_limit_error"
        busy = embed(s, input="x")
        assert busy.headers["retry-after"] == "1"
        assert s.app.state.metrics.value("embed_gateway_requests_in_flight") == 3
        assert httpx.get(s.url + "/v1/models").status_code == 200  # only embedding work is bounded
        s.loop.call_soon_threadsafe(engine.release.set)  # type: ignore[union-attr]
        for t in threads:
            t.join(timeout=10)
        assert [r.status_code for r in results] == [200, 200, 200]
        assert embed(s, input="x").status_code == 200
        eventually(lambda: s.app.state.metrics.value("embed_gateway_requests_in_flight") == 0)
        failures = s.app.state.metrics.value(
            "embed_gateway_request_failures_total", route="/v1/embeddings", model="", task="", engine="",
            status="429", code="too_many_concurrent_requests")
        assert failures == 2, generate_latest(s.app.state.metrics.registry).decode()


def test_request_deadline_is_504_with_retry_after_and_the_work_is_cancelled() -> None:
    cancelled: list[str] = []

    class Slow(FakeEngine):
        async def embed(self, job):  # type: ignore[no-untyped-def]
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(job.request_id)
                raise
            return await super().embed(job)

    settings = load_settings(limits={"request_timeout": 0.5})
    with live_server(settings, {"slow": Slow("slow")}) as s:
        r = httpx.post(s.url + "/v1/embeddings", json={"input": "x"}, headers={"x-request-id": "late-1"}, timeout=20)
        err = assert_error(r, 504, "timeout", "limits.request_timeout = 0.5 s", "dropped")
        assert err["type"] == "timeout_error" and r.headers["retry-after"] == "1"
        assert r.headers["x-request-id"] == "late-1"
    assert cancelled == ["late-1"]

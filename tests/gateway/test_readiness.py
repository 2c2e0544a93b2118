"""``GET /ready`` as a load balancer sees it, through the real app over HTTP.

The rule (gateway/pool/readiness.py): 200 while every task the configuration serves has an engine able
to serve it now — ``ready`` with every engine in, ``degraded`` with one out (parity, circuit,
start failure) — and 503 only when a task has no engine, or while draining. Engines here are the
scripted fakes; ``hf`` is the parity reference, ``vllm`` a fast path for text-matching only.
"""

from __future__ import annotations

import dataclasses

import httpx

from gateway.config import load_settings
from gateway.contract import ROUTE_KEYS, EngineUnavailableError, Task
from tests.support.fakes import FakeEngine
from tests.support.server import LiveServer, live_server

TEXT_MATCHING_ONLY = frozenset({Task.TEXT_MATCHING})


class Divergent(FakeEngine):
    """Answers, but with vectors the reference does not return (what the parity guard is for)."""

    async def embed(self, job):  # type: ignore[no-untyped-def]
        result = await super().embed(job)
        return dataclasses.replace(result, vectors=-result.vectors)


def quick(**over: object):  # type: ignore[no-untyped-def]
    """No retry sleeps; the monitor runs only when a test ticks it."""
    base: dict[str, object] = {"retry": {"initial_backoff": 0, "max_backoff": 0}, "breaker": {"probe_interval": 3600}}
    return load_settings(**(base | over))


def ready(s: LiveServer) -> httpx.Response:
    return httpx.get(s.url + "/ready", timeout=10)


def embed(s: LiveServer, task: str) -> httpx.Response:
    return httpx.post(s.url + "/v1/embeddings", json={"input": ["a b", "c"], "task": task}, timeout=30)


def assert_every_task_served(s: LiveServer, by: str = "hf") -> None:
    for key in ROUTE_KEYS:
        r = embed(s, key)
        assert r.status_code == 200, (key, r.text)
        assert r.headers["x-embed-engine"] == by, key


def metric(s: LiveServer, name: str, **labels: str) -> float:
    return s.app.state.metrics.value(name, **labels)


def test_every_engine_in_is_ready_with_the_fast_path_first() -> None:
    with live_server(quick(), {"hf": FakeEngine("hf"), "vllm": FakeEngine("vllm", tasks=TEXT_MATCHING_ONLY)}) as s:
        r = ready(s)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ready" and body["not_ready"] == [] and body["fast_path_lost"] == []
        assert body["tasks"]["text-matching"] == ["vllm", "hf"] and body["tasks"]["retrieval.query"] == ["hf"]
        assert set(body["tasks"]) == set(ROUTE_KEYS) and body["unserved"] == []
        assert {k: v for k, v in body["engines"]["vllm"].items() if k != "parity"} == {
            "ready": True, "reason": None, "detail": "ok", "circuit": "closed",
        }
        assert body["engines"]["vllm"]["parity"]["status"] == "passed"
        assert embed(s, "text-matching").headers["x-embed-engine"] == "vllm"
        assert metric(s, "embed_gateway_ready", state="ready") == 1
        assert metric(s, "embed_gateway_ready", state="degraded") == 0
        assert metric(s, "embed_gateway_task_engines_available", task="text-matching") == 2


def test_vllm_held_back_by_parity_is_degraded_and_every_task_is_served() -> None:
    with live_server(quick(), {"hf": FakeEngine("hf"), "vllm": Divergent("vllm", tasks=TEXT_MATCHING_ONLY)}) as s:
        r = ready(s)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "degraded"
        assert body["not_ready"] == ["vllm"] and body["unserved"] == []
        assert body["fast_path_lost"] == ["text-matching"]
        assert body["tasks"] == {key: ["hf"] for key in ROUTE_KEYS}
        vllm = body["engines"]["vllm"]
        assert vllm["ready"] is False and vllm["reason"] == "parity_failed"
        assert vllm["detail"].startswith("parity check failed") and vllm["parity"]["status"] == "failed"
        assert body["engines"]["hf"]["ready"] is True
        assert_every_task_served(s)
        # the metrics say the same, read from the same rule
        assert metric(s, "embed_gateway_ready", state="degraded") == 1
        assert metric(s, "embed_gateway_ready", state="ready") == 0
        assert metric(s, "embed_gateway_engine_ready", engine="vllm") == 0
        assert metric(s, "embed_gateway_engine_ready", engine="hf") == 1
        assert metric(s, "embed_gateway_task_engines_available", task="text-matching") == 1
        text = httpx.get(s.url + "/metrics").text
        assert 'embed_gateway_ready{state="degraded"} 1.0' in text


def test_vllm_that_failed_to_start_is_degraded_and_every_task_is_served() -> None:
    dead = FakeEngine("vllm", tasks=TEXT_MATCHING_ONLY, start_error=RuntimeError("connection refused"))
    with live_server(quick(), {"hf": FakeEngine("hf"), "vllm": dead}) as s:
        body = ready(s).json()
        assert body["status"] == "degraded" and body["not_ready"] == ["vllm"]
        assert body["engines"]["vllm"]["reason"] == "start_failed"
        assert "connection refused" in body["engines"]["vllm"]["detail"]
        assert_every_task_served(s)


def test_vllm_that_dies_opens_its_circuit_degraded_then_ready_again_once_it_answers() -> None:
    vllm = FakeEngine("vllm", tasks=TEXT_MATCHING_ONLY)
    with live_server(quick(), {"hf": FakeEngine("hf"), "vllm": vllm}) as s:
        assert ready(s).json()["status"] == "ready"
        vllm.fail_with = lambda job: EngineUnavailableError("connection refused", engine="vllm")
        for _ in range(3):  # breaker.failure_threshold: each request falls back to hf
            r = embed(s, "text-matching")
            assert r.status_code == 200 and r.headers["x-embed-engine"] == "hf"
        r = ready(s)
        assert r.status_code == 200 and r.json()["status"] == "degraded"
        assert r.json()["engines"]["vllm"]["reason"] == "circuit_open"
        assert r.json()["engines"]["vllm"]["circuit"] == "open"
        assert_every_task_served(s)
        vllm.fail_with = None
        s.call(s.app.state.monitor.tick())  # out with parity duty: a parity check, which passes
        r = ready(s)
        assert r.status_code == 200 and r.json()["status"] == "ready", r.text
        assert embed(s, "text-matching").headers["x-embed-engine"] == "vllm"


def test_a_task_with_no_engine_able_to_serve_it_is_503() -> None:
    dead = FakeEngine("vllm", tasks=TEXT_MATCHING_ONLY, start_error=RuntimeError("no GPU"))
    settings = quick(routes={"text-matching": ["vllm"]})  # strict: text-matching only on vLLM
    with live_server(settings, {"hf": FakeEngine("hf"), "vllm": dead}) as s:
        r = ready(s)
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "not ready" and body["unserved"] == ["text-matching"]
        assert body["tasks"]["text-matching"] == [] and body["tasks"]["retrieval.query"] == ["hf"]
        assert embed(s, "retrieval.query").status_code == 200  # the others are still served
        assert embed(s, "text-matching").status_code == 503
        assert metric(s, "embed_gateway_ready", state="not_ready") == 1
        assert metric(s, "embed_gateway_task_engines_available", task="text-matching") == 0


def test_the_only_engine_unhealthy_is_503_as_the_monitor_finds_it() -> None:
    only = FakeEngine("hf")
    with live_server(quick(), {"hf": only}) as s:
        assert ready(s).status_code == 200
        only.healthy = False
        assert ready(s).status_code == 200  # /ready reads the recorded state; it does not check
        s.call(s.app.state.monitor.tick())  # the monitor's health check takes it out
        r = ready(s)
        assert r.status_code == 503 and r.json()["unserved"] == list(ROUTE_KEYS)
        assert r.json()["engines"]["hf"]["reason"] == "circuit_open"
        assert "scripted unhealthy" in r.json()["engines"]["hf"]["detail"]
        only.healthy = True
        s.call(s.app.state.monitor.tick())  # the probe brings it back
        assert ready(s).status_code == 200


def test_an_engine_unhealthy_at_start_up_is_out_before_the_first_monitor_round() -> None:
    # no parity guard: no parity check judges "other" at start-up, the start-up health check does
    with live_server(quick(parity={"enabled": False}), {"hf": FakeEngine("hf"), "other": FakeEngine("other", healthy=False)}) as s:
        body = ready(s).json()
        assert body["status"] == "degraded" and body["not_ready"] == ["other"]
        assert "scripted unhealthy" in body["engines"]["other"]["detail"]


def test_draining_is_503_shutting_down() -> None:
    with live_server(quick(), {"hf": FakeEngine("hf")}) as s:
        s.app.state.gate.draining = True  # what SIGTERM's first step does
        try:
            r = ready(s)
            assert r.status_code == 503 and r.json()["status"] == "shutting down"
            assert metric(s, "embed_gateway_ready", state="shutting_down") == 1
        finally:
            s.app.state.gate.draining = False


def test_ready_and_metrics_never_run_a_health_check() -> None:
    hf, vllm = FakeEngine("hf"), FakeEngine("vllm", tasks=TEXT_MATCHING_ONLY)
    with live_server(quick(), {"hf": hf, "vllm": vllm}) as s:
        before = (hf.health_checks, vllm.health_checks)
        for _ in range(5):
            assert ready(s).status_code == 200
            assert httpx.get(s.url + "/metrics").status_code == 200
        assert (hf.health_checks, vllm.health_checks) == before
        s.call(s.app.state.monitor.tick())  # the monitor is what checks: one health check each
        assert (hf.health_checks, vllm.health_checks) == (before[0] + 1, before[1] + 1)

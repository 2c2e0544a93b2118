"""How much latency the gateway adds in front of vLLM: ``embed-gateway measure-overhead``.

Sends the same one-text text-matching request, one at a time, alternately to vLLM directly (as a
plain OpenAI client would: float JSON, vLLM normalises) and through the gateway (which passes it
on as one call asking for raw base64 vectors, and post-processes them), in the same run, and
reports the latency percentiles of both and the p50 difference. Alternating cancels slow drift of
the machine; run it on loopback on an idle machine. It measures the gateway, not an engine, so it
lives with the bench.

Latency on a machine with few cores mixes the gateway's own work with waiting for a core (client,
gateway and vLLM's processes take turns). So it also reports the CPU time each server spent per
request, from ``process_cpu_seconds_total`` on their ``/metrics`` (10 ms ticks: use a few hundred
requests): the gateway's own cost, whatever the scheduling.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import httpx

from gateway.bench.scrape import sample_values
from gateway.bench.stats import percentile

__all__ = ["main_json", "measure"]


def _summary(ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def cpu_seconds(client: httpx.Client) -> float | None:
    """``process_cpu_seconds_total`` of the server behind ``client`` (None if it exposes none)."""
    try:
        r = client.get("/metrics")
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    values = sample_values(r.text, "process_cpu_seconds_total")
    return values[0] if values else None


def _per_request_ms(before: float | None, after: float | None, requests: int) -> float | None:
    return None if before is None or after is None else round((after - before) * 1000 / requests, 3)


def measure(gateway: str, vllm: str, *, requests: int = 300, warmup: int = 20, text: str = "The user likes dark roast coffee.",
            model: str | None = None, gateway_model: str = "jina-embeddings-v3", api_key: str | None = None) -> dict[str, Any]:
    auth = {"authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=vllm.rstrip("/"), timeout=60) as direct, \
            httpx.Client(base_url=gateway.rstrip("/"), timeout=60, headers=auth) as gw:
        served = model or direct.get("/v1/models").json()["data"][0]["id"]
        direct_body = {"model": served, "input": [text]}
        gateway_body = {"model": gateway_model, "input": [text]}

        def once(client: httpx.Client, body: dict[str, Any]) -> tuple[float, httpx.Response]:
            started = time.perf_counter()
            r = client.post("/v1/embeddings", json=body)
            elapsed = (time.perf_counter() - started) * 1000
            r.raise_for_status()
            return elapsed, r

        for _ in range(warmup):
            once(direct, direct_body)
            _, r = once(gw, gateway_body)
        if r.headers.get("x-embed-engine") != "vllm":
            raise SystemExit(
                f"the gateway served text-matching with {r.headers.get('x-embed-engine')!r}, not vLLM: "
                "enable engines.vllm and check GET /ready"
            )
        d_ms: list[float] = []
        g_ms: list[float] = []
        cpu_before = cpu_seconds(gw), cpu_seconds(direct)
        for i in range(requests):
            pair = [(direct, direct_body, d_ms), (gw, gateway_body, g_ms)]
            for client, body, sink in pair if i % 2 == 0 else reversed(pair):
                elapsed, r = once(client, body)
                sink.append(elapsed)
                if client is gw and r.headers.get("x-embed-engine") != "vllm":
                    raise SystemExit("the gateway stopped serving with vLLM during the run")
        cpu_after = cpu_seconds(gw), cpu_seconds(direct)
    direct_s, gateway_s = _summary(d_ms), _summary(g_ms)
    return {
        "requests_each": requests,
        "text_chars": len(text),
        "vllm_direct": direct_s,
        "through_gateway": gateway_s,
        "added_p50_ms": round(gateway_s["p50_ms"] - direct_s["p50_ms"], 3),
        "added_median_of_pairs_ms": round(statistics.median(g - d for g, d in zip(g_ms, d_ms, strict=True)), 3),
        # CPU the gateway process spent per request through it (HTTP in and out, the call to vLLM)
        "gateway_cpu_ms_per_request": _per_request_ms(cpu_before[0], cpu_after[0], requests),
        # CPU of vLLM's API-server process per request it answered (direct and via the gateway;
        # its engine-core process, which runs the model, is not in this figure)
        "vllm_api_server_cpu_ms_per_request": _per_request_ms(cpu_before[1], cpu_after[1], 2 * requests),
    }


def main_json(**kwargs: Any) -> str:
    return json.dumps(measure(**kwargs), indent=2)

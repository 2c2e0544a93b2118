"""The cache's bench (target ``cache``): a Mem0-like workload with repeats, served with the cache
off, in memory, and on Redis; then the latency of one hit against one engine call, idle.

Mem0 embeds each fact when it is added and again when it is updated or searched, one text per
call, so most texts repeat: ``repeat`` of the requests (70 % by default) re-send a fact already
sent. Each mode runs on a fresh gateway (an empty cache), so the hit rate is the workload's own.
The Redis mode turns the memory tier off, so every hit is a Redis round trip (the worst case of a
replica that has not seen the fact). Redis is the ``redis_url`` given, else a ``redis-server``
started here on a free loopback port (the mode is skipped when there is neither).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx

from gateway.bench.workloads import WORKLOADS, BenchRequest, text_of_length

if TYPE_CHECKING:
    from gateway.bench.results import BenchResults
    from gateway.bench.runner import BenchSettings

__all__ = ["mem0_workload", "run_cache_bench"]


def mem0_workload(n_requests: int, count_tokens: Callable[[str], int], *, repeat: float = 0.7,
                  seed: int = 0) -> list[BenchRequest]:
    """``n_requests`` one-fact text-matching requests; ``repeat`` of them re-send an earlier fact."""
    rng = random.Random(f"mem0:{seed}")
    lo, hi = WORKLOADS["facts"].lengths
    seen: list[tuple[str, int]] = []
    out = []
    for _ in range(n_requests):
        if seen and rng.random() < repeat:
            text, n = rng.choice(seen)
        else:
            text, n = text_of_length(rng, rng.randint(lo, hi), count_tokens)
            seen.append((text, n))
        out.append(BenchRequest((text,), "text-matching", (n,)))
    return out


@contextmanager
def _redis(url: str | None) -> Iterator[str | None]:
    """The Redis to use: ``url``, else a throw-away redis-server (None when not installed)."""
    if url:
        yield url
        return
    exe = shutil.which("redis-server")
    if exe is None:
        yield None
        return
    from gateway.bench.servers import _free_port

    port, workdir = _free_port(), tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir, "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        import socket

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _idle_p50(url: str, text: str, n: int, headers: dict[str, str]) -> float:
    from gateway.bench.stats import percentile

    body = {"input": [text], "task": "text-matching"}
    with httpx.Client(timeout=60) as client:
        client.post(url + "/v1/embeddings", json=body, headers=headers).raise_for_status()  # fills / warms
        lat = []
        for _ in range(n):
            t0 = time.perf_counter()
            client.post(url + "/v1/embeddings", json=body, headers=headers).raise_for_status()
            lat.append((time.perf_counter() - t0) * 1000)
    return round(percentile(lat, 50), 3)


def run_cache_bench(s: BenchSettings, reqs: list[BenchRequest], results: BenchResults) -> dict[str, Any]:
    """Drive ``reqs`` through a gateway per cache mode (rows go to the ``mem0`` workload of
    ``results``); returns the idle latencies: a memory hit, a Redis hit, and an engine call of the
    same one-fact request."""
    from gateway.bench.results import ServedRow
    from gateway.bench.runner import _drive, gateway_body, gateway_env
    from gateway.bench.servers import gateway_server

    idle: dict[str, Any] = {}
    with _redis(s.redis_url) as redis_url:
        modes: dict[str, dict[str, str]] = {"off": {"EMBED_GATEWAY_CACHE__MEMORY_BYTES": "0"}, "memory": {}}
        if redis_url:
            modes["redis"] = {"EMBED_GATEWAY_CACHE__MEMORY_BYTES": "0", "EMBED_GATEWAY_CACHE__REDIS_URL": redis_url,
                              "EMBED_GATEWAY_CACHE__KEY_PREFIX": f"bench-{time.time_ns()}:"}
        for mode, env in modes.items():
            srv, url = gateway_server(
                f"gateway-cache-{mode}", gateway_env(s, {"EMBED_GATEWAY_CACHE__MEMORY_BYTES": "268435456", **env}),
                s.out_dir,
            )
            srv.start()
            try:
                summary = _drive(url + "/v1/embeddings", reqs, gateway_body, s)
                cache = httpx.get(url + "/info", timeout=10).json().get("cache") or {}
                results.add("mem0", ServedRow(f"cache-{mode}", summary, srv.peak_rss(), hit_rate=cache.get("hit_rate")))
                text = reqs[0].texts[0]
                if mode == "off":
                    idle["engine_p50_ms"] = _idle_p50(url, text, s.idle_requests, {})
                else:
                    idle[f"{mode}_hit_p50_ms"] = _idle_p50(url, text, s.idle_requests, {})
            finally:
                srv.stop()
    return idle

"""A bounded load test: 200 concurrent clients against `embed-gateway serve` (a real process, the
real HF engine on the tiny checkpoint), mixed tasks and input lengths, for LOAD_SECONDS.

Asserted: zero errors; every response's vectors equal the same inputs' sequential result (one
request at a time, before the load); the load was really concurrent; the gateway's memory stays
bounded (its peak resident size grows by less than MEMORY_BOUND_MB over the pre-load baseline).
The figures (requests, inputs, tokens, latencies, in-flight peak, memory) are printed for
docs/reliability.md. Loopback only; it stops by itself.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from tests.support.process import GatewayProcess

CLIENTS = 200
LOAD_SECONDS = 12.0
MEMORY_BOUND_MB = 600
TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching", "none"]
WORDS = "memory coffee meeting friday deadline project berlin doctor garden music train budget".split()


def pool(seed: int = 7) -> list[str]:
    """Texts from ~5 to ~200 tokens (facts, sentences, passages) in a few scripts."""
    rng = random.Random(seed)
    out = []
    for i in range(48):
        n = rng.choice([2, 4, 8, 16, 32, 100])
        words = " ".join(rng.choice(WORDS) for _ in range(n))
        out.append([f"fact {i}: {words}", f"người dùng {i} {words}", f"用户{i} {words}"][i % 3])
    return out


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def in_flight(url: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("embed_gateway_requests_in_flight "):
            return float(line.split()[1])
    return 0.0


async def sequential(url: str, texts: list[str]) -> dict[tuple[str, str], np.ndarray]:
    out = {}
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for task in TASKS:
            for text in texts:
                r = await client.post("/v1/embeddings", json={"input": [text], "task": task})
                r.raise_for_status()
                out[(task, text)] = np.array(r.json()["data"][0]["embedding"], dtype=np.float32)
    return out


async def load(url: str, texts: list[str], stop_at: float) -> list[tuple[int, float, str, list[str], object]]:
    """CLIENTS closed-loop clients until ``stop_at``; each outcome: (status, seconds, task, inputs, body)."""
    outcomes: list[tuple[int, float, str, list[str], object]] = []
    limits = httpx.Limits(max_connections=CLIENTS + 10, max_keepalive_connections=CLIENTS + 10)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one_client(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop_at:
                task = rng.choice(TASKS)
                inputs = rng.sample(texts, rng.choice([1, 1, 2, 4]))
                started = time.perf_counter()
                try:
                    r = await client.post("/v1/embeddings", json={"input": inputs, "task": task})
                    body: object = r.json() if r.status_code == 200 else r.text
                    outcomes.append((r.status_code, time.perf_counter() - started, task, inputs, body))
                except httpx.HTTPError as exc:
                    outcomes.append((0, time.perf_counter() - started, task, inputs, repr(exc)))

        await asyncio.gather(*(one_client(i) for i in range(CLIENTS)))
    return outcomes


def test_200_concurrent_clients_mixed_tasks_zero_errors_exact_vectors_bounded_memory(original_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    # the cache off: the load must reach the engine (the sequential pass would otherwise fill the cache)
    config.write_text(f"engines:\n  hf:\n    model: {original_dir}\n    device: cpu\nserver:\n  log_level: warning\n"
                      "cache:\n  memory_bytes: 0\n")
    gw = GatewayProcess(config, tmp_path / "gateway.log")
    texts = pool()
    try:
        gw.wait_for("ready", lambda: httpx.get(gw.url + "/ready", timeout=2).status_code == 200, timeout=120)
        want = asyncio.run(sequential(gw.url, texts))
        base_rss, base_hwm = rss_mb(gw.proc.pid)

        samples: list[tuple[float, float]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                try:
                    samples.append((in_flight(gw.url), rss_mb(gw.proc.pid)[0]))
                except (httpx.HTTPError, OSError):
                    pass
                done.wait(0.5)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        outcomes = asyncio.run(load(gw.url, texts, started + LOAD_SECONDS))
        elapsed = time.monotonic() - started
        done.set()
        sampler.join(timeout=30)
        end_rss, peak_hwm = rss_mb(gw.proc.pid)
    finally:
        gw.stop()

    errors = [o for o in outcomes if o[0] != 200]
    assert errors == [], errors[:3]
    checked = 0
    for _, _, task, inputs, body in outcomes:
        got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)  # type: ignore[index]
        np.testing.assert_allclose(got, np.stack([want[(task, t)] for t in inputs]), atol=1e-5, rtol=0)
        checked += len(inputs)
    peak_in_flight = max((s[0] for s in samples), default=0.0)
    assert len(outcomes) >= CLIENTS  # every client got through at least once
    assert peak_in_flight >= CLIENTS / 4, samples  # really concurrent, not one at a time
    growth = peak_hwm - base_hwm
    assert growth < MEMORY_BOUND_MB, f"peak RSS grew by {growth:.0f} MB under load"

    latencies = sorted(o[1] for o in outcomes)
    tokens = sum(d["usage"]["total_tokens"] for *_, d in outcomes)  # type: ignore[index]
    print(
        f"\nLOAD: {CLIENTS} clients, {elapsed:.1f} s: {len(outcomes)} requests ({len(outcomes) / elapsed:.0f}/s), "
        f"{checked} inputs checked against sequential results, {tokens} tokens, 0 errors; "
        f"latency p50 {1000 * statistics.median(latencies):.0f} ms, p99 {1000 * latencies[int(0.99 * len(latencies))]:.0f} ms; "
        f"peak in flight {peak_in_flight:.0f}; RSS baseline {base_rss:.0f} MB, peak {peak_hwm:.0f} MB "
        f"(+{growth:.0f}), end {end_rss:.0f} MB"
    )

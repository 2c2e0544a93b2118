"""The Ray figures of docs/benchmarks.md: replicas' throughput, the hop's idle latency.

``python -m engine_hf.tools.measure_ray --model DIR`` starts a local Ray (loopback), then for the
in-process engine and for 1 and 2 Serve replicas (one torch thread each) it times a closed loop of
``--requests`` jobs (``--concurrency`` in flight, ``--inputs`` texts each) and, at idle, one-text
jobs one at a time (the median latency; the difference is what the Ray hop adds). Prints JSON.
The numbers are the contract's (what the gateway sees), without HTTP in front.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

from engine_hf.settings import HFEngineSettings
from gateway.contract import EmbedJob, Task

WORDS = "the user likes coffee tea morning evening works at company lives in city music dog cat park".split()


def _texts(n: int, seed: int) -> list[str]:
    return [" ".join(WORDS[(i * 7 + j * 3 + seed) % len(WORDS)] for j in range(24)) for i in range(n)]


async def _measure(engine: Any, requests: int, concurrency: int, inputs: int, idle: int) -> dict[str, float]:
    await engine.start()
    try:
        one = EmbedJob(inputs=["the user likes dark roast coffee"], task=Task.TEXT_MATCHING)
        for _ in range(5):
            await engine.embed(one)
        lat = []
        for _ in range(idle):
            t = time.perf_counter()
            await engine.embed(one)
            lat.append(time.perf_counter() - t)
        jobs = [EmbedJob(inputs=_texts(inputs, i), task=Task.RETRIEVAL_PASSAGE) for i in range(requests)]
        sem = asyncio.Semaphore(concurrency)
        tokens = 0

        async def run(job: EmbedJob) -> None:
            nonlocal tokens
            async with sem:
                tokens += sum((await engine.embed(job)).token_counts)

        t = time.perf_counter()
        await asyncio.gather(*(run(j) for j in jobs))
        wall = time.perf_counter() - t
        return {"idle_p50_ms": statistics.median(lat) * 1e3, "tokens_per_s": tokens / wall,
                "requests_per_s": requests / wall}
    finally:
        await engine.aclose()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--inputs", type=int, default=16)
    p.add_argument("--idle", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()

    import ray

    from engine_hf import HFEngine
    from engine_hf.ray import RayHFEngine

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    base = HFEngineSettings(model=a.model, device="cpu", threads=1)
    out: dict[str, Any] = {"load_average_start": os.getloadavg()}
    runs: dict[str, list[dict[str, float]]] = {"in-process": [], "ray-1": [], "ray-2": []}
    for _ in range(a.repeats):
        runs["in-process"].append(asyncio.run(_measure(HFEngine(base), a.requests, a.concurrency, a.inputs, a.idle)))
        for n in (1, 2):
            s = base.model_copy(update={"ray": base.ray.model_copy(update={
                "enabled": True, "num_replicas": n, "threads": 1, "app_name": f"bench-{n}"})})
            runs[f"ray-{n}"].append(asyncio.run(_measure(RayHFEngine(s), a.requests, a.concurrency, a.inputs, a.idle)))
    out["load_average_end"] = os.getloadavg()
    out["median"] = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
    out["runs"] = runs
    print(json.dumps(out, indent=1))
    ray.shutdown()


if __name__ == "__main__":
    main()

"""Load generators over HTTP: closed loop (N clients back to back) and open loop (fixed arrival
rate, Poisson). Both are bounded in request count and in time, and target loopback servers."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from gateway.bench.stats import Sample
from gateway.bench.workloads import BenchRequest

__all__ = ["BodyFn", "closed_loop", "closed_loop_tagged", "open_loop", "send"]

T = TypeVar("T")

#: builds the JSON body of one request for a target (e.g. adds "task" or "model")
BodyFn = Callable[[BenchRequest], dict[str, Any]]


async def send(client: httpx.AsyncClient, url: str, req: BenchRequest, body: BodyFn) -> Sample:
    t0 = time.perf_counter()
    try:
        resp = await client.post(url, json=body(req))
    except httpx.HTTPError:
        return Sample(time.perf_counter() - t0, 0, len(req.texts), False, 0)
    latency = time.perf_counter() - t0
    if resp.status_code != 200:
        return Sample(latency, 0, len(req.texts), False, resp.status_code)
    usage = resp.json().get("usage") or {}
    return Sample(latency, int(usage.get("prompt_tokens") or sum(req.tokens)), len(req.texts), True)


async def closed_loop(
    url: str, requests: Sequence[BenchRequest], body: BodyFn, *, concurrency: int, max_seconds: float
) -> tuple[list[Sample], float]:
    """``concurrency`` clients send the requests in order, each waiting for its answer."""
    tagged, wall = await closed_loop_tagged(url, [(None, r) for r in requests], {None: body},
                                            concurrency=concurrency, max_seconds=max_seconds)
    return [sample for _, sample in tagged], wall


async def closed_loop_tagged(
    url: str, requests: Sequence[tuple[T, BenchRequest]], bodies: Mapping[T, BodyFn], *, concurrency: int,
    max_seconds: float,
) -> tuple[list[tuple[T, Sample]], float]:
    """:func:`closed_loop` over requests that each carry a tag (e.g. the model it is for): the tag
    picks the body builder, and every sample keeps its request's tag."""
    out: list[tuple[T, Sample]] = []
    queue = list(reversed(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        start = time.perf_counter()
        deadline = start + max_seconds

        async def worker() -> None:
            while queue and time.perf_counter() < deadline:
                tag, req = queue.pop()
                out.append((tag, await send(client, url, req, bodies[tag])))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return out, time.perf_counter() - start


async def open_loop(
    url: str, requests: Sequence[BenchRequest], body: BodyFn, *, rate: float, max_seconds: float, seed: int = 0
) -> tuple[list[Sample], float]:
    """Requests arrive at ``rate`` per second (exponential gaps) whatever the server's pace."""
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=1024)) as client:
        start = time.perf_counter()
        tasks = []
        t = 0.0
        for req in requests:
            if t > max_seconds:
                break
            delay = start + t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(client, url, req, body)))
            t += rng.expovariate(rate)
        samples = list(await asyncio.gather(*tasks))
        return samples, time.perf_counter() - start

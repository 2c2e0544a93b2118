"""Load generators over HTTP: closed loop (N clients back to back) and open loop (fixed arrival
rate, Poisson). Both are bounded in request count and in time, and target loopback servers.

The clients are as light as a Python client can be, because on a small machine they share the
cores with the servers they measure: every request is encoded before the clock starts and sent in
one write over a kept-alive connection (:class:`engine_vllm.transport.KeepAliveTransport`:
``httptools``, no ``httpx`` objects), and an answer is read for its status and ``usage`` alone.
``httpx.AsyncClient`` spends about 2 ms of CPU per request on a 2-vCPU machine under 32 clients,
more than vLLM's own HTTP server spends serving it (1.7 ms); a bench driven by it measures its
client, and a server that takes less CPU than another one looks no faster. This one spends
about 0.1 ms.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import httpx
import orjson

from engine_vllm.transport import KeepAliveTransport, request_head, with_body
from gateway.bench.stats import Sample
from gateway.bench.workloads import BenchRequest

__all__ = ["BenchClient", "BodyFn", "Prepared", "closed_loop", "closed_loop_tagged", "open_loop"]

T = TypeVar("T")

#: builds the JSON body of one request for a target (e.g. adds "task" or "model")
BodyFn = Callable[[BenchRequest], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Prepared:
    """One request as it goes on the wire (request line, headers and body), and what it carries."""

    data: bytes
    texts: int
    #: the request's own token count, for an answer without ``usage``
    tokens: int


class BenchClient:
    """Keep-alive POSTs of prepared JSON bodies to one URL (plain HTTP, as the bench's servers
    speak); at most ``connections`` requests in flight."""

    def __init__(self, url: str, *, connections: int, timeout: float = 600.0) -> None:
        post = httpx.Request("POST", url, headers={"content-type": "application/json", "accept": "application/json"})
        if post.url.scheme != "http":
            raise ValueError(f"the bench's client speaks plain http, not {url!r}")
        self._origin = (post.url.host, post.url.port or 80)
        self._head = request_head(post)
        self._timeouts: dict[str, float | None] = {"connect": timeout, "read": timeout, "pool": timeout}
        self._pool = KeepAliveTransport(max_connections=connections)

    def prepare(self, req: BenchRequest, body: BodyFn) -> Prepared:
        return Prepared(with_body(self._head, orjson.dumps(body(req))), len(req.texts), sum(req.tokens))

    async def send(self, req: Prepared) -> Sample:
        """One request: its latency, and the tokens its answer's ``usage`` counts (a failure is a
        sample that is not ok, with the status, 0 when no answer came)."""
        t0 = time.perf_counter()
        try:
            status, _, content = await self._pool.exchange(self._origin, req.data, self._timeouts)
        except httpx.HTTPError:
            return Sample(time.perf_counter() - t0, 0, req.texts, False, 0)
        latency = time.perf_counter() - t0
        if status != 200:
            return Sample(latency, 0, req.texts, False, status)
        usage = orjson.loads(content).get("usage") or {}
        return Sample(latency, int(usage.get("prompt_tokens") or req.tokens), req.texts, True)

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def __aenter__(self) -> BenchClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


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
    async with BenchClient(url, connections=concurrency) as client:
        queue = [(tag, client.prepare(req, bodies[tag])) for tag, req in reversed(requests)]
        start = time.perf_counter()
        deadline = start + max_seconds

        async def worker() -> None:
            while queue and time.perf_counter() < deadline:
                tag, req = queue.pop()
                out.append((tag, await client.send(req)))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return out, time.perf_counter() - start


async def open_loop(
    url: str, requests: Sequence[BenchRequest], body: BodyFn, *, rate: float, max_seconds: float, seed: int = 0
) -> tuple[list[Sample], float]:
    """Requests arrive at ``rate`` per second (exponential gaps) whatever the server's pace."""
    rng = random.Random(seed)
    async with BenchClient(url, connections=1024) as client:
        prepared = [client.prepare(req, body) for req in requests]
        start = time.perf_counter()
        tasks = []
        t = 0.0
        for req in prepared:
            if t > max_seconds:
                break
            delay = start + t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(client.send(req)))
            t += rng.expovariate(rate)
        samples = list(await asyncio.gather(*tasks))
        return samples, time.perf_counter() - start

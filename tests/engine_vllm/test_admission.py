"""The vLLM engine's own bounds: at most ``max_queued_inputs`` inputs on their way to vLLM, and
``limits.max_tokens_per_request`` counted (with vLLM's /tokenize) before anything is embedded.

vLLM cannot be made to hold requests on demand, so a MockTransport that answers like vLLM (the
boundary tests' FakeVLLM) holds them; the real vLLM's counts are checked in tests/e2e."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from engine_vllm import VLLMEngine
from engine_vllm.engine import token_bound
from engine_vllm.settings import VLLMEngineSettings
from gateway.contract import EmbedJob, EngineOverloadedError, InputTooLongError, Task, TooManyTokensError
from tests.engine_vllm.test_boundary import FakeVLLM


class Queue:
    def __init__(self) -> None:
        self.events: list[tuple[int, int]] = []

    def batch(self, engine: str, *, sequences: int, tokens: int, seconds: float) -> None:
        pass

    def queue(self, engine: str, *, depth: int, tokens: int) -> None:
        self.events.append((depth, tokens))


def held_engine(fake: FakeVLLM, release: asyncio.Event, observer: Any = None, **settings: Any) -> VLLMEngine:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/embeddings" and b"dimension probe" not in request.content:
            await release.wait()
        return fake(request)

    kw = {"observer": observer} if observer is not None else {}
    return VLLMEngine(VLLMEngineSettings(enabled=True, url="http://vllm.test", **settings),
                      transport=httpx.MockTransport(handler), **kw)


def job(*texts: str, **kw: Any) -> EmbedJob:
    return EmbedJob(inputs=texts, task=Task.TEXT_MATCHING, **kw)


def test_inputs_beyond_max_queued_inputs_are_refused_as_overloaded() -> None:
    seen = Queue()

    async def main() -> None:
        release = asyncio.Event()
        e = held_engine(FakeVLLM(), release, observer=seen, max_queued_inputs=4)
        await e.start()
        first = asyncio.create_task(e.embed(job("a", "b c", "d")))
        await asyncio.sleep(0.05)
        with pytest.raises(EngineOverloadedError) as info:
            await e.embed(job("e", "f"))  # 3 + 2 > 4
        assert info.value.retry_after == 1.0 and "3 inputs" in info.value.message
        fits = asyncio.create_task(e.embed(job("g")))  # 3 + 1 = 4: admitted
        await asyncio.sleep(0.05)
        assert (await e.check_health()).extra["queued_inputs"] == 4
        release.set()
        a, g = await asyncio.gather(first, fits)
        assert a.token_counts == (10,) and g.token_counts == (3,)  # one call each: vLLM's batch total
        assert (await e.check_health()).extra["queued_inputs"] == 0
        await e.aclose()

    asyncio.run(main())
    assert (4, 0) in seen.events and seen.events[-1] == (0, 0)


def test_token_total_is_counted_before_embedding_only_when_it_could_exceed_the_limit() -> None:
    async def main() -> None:
        release = asyncio.Event()
        release.set()
        fake = FakeVLLM()
        e = held_engine(fake, release)
        await e.start()
        # short inputs: the bound (18 tokens per character + 3) is within the limit, no counting
        ok = await e.embed(job("a b", "c", max_total_tokens=1000))
        assert ok.token_counts == (7,) and not [p for p, _ in fake.requests if p == "/tokenize"]
        # longer ones could exceed it: counted first; 2 x (5 words + 2) = 14 tokens fit in 20
        fake.requests.clear()
        ok = await e.embed(job("one two three four five", "six seven eight nine ten", max_total_tokens=20))
        assert ok.token_counts == (14,)
        assert [p for p, _ in fake.requests].count("/tokenize") == 2
        # ... and refused, with the exact count, before anything is embedded
        fake.requests.clear()
        with pytest.raises(TooManyTokensError) as info:
            await e.embed(job("one two three four five", "six seven eight nine ten", max_total_tokens=13))
        assert info.value.n_tokens == 14 and info.value.limit == 13
        assert "limits.max_tokens_per_request = 13" in info.value.message
        assert not fake.embeds()
        await e.aclose()
        # an over-long input is its own 400 (as on the HF engine), the total counts truncated inputs
        short = held_engine(FakeVLLM(), release, max_input_tokens=10)
        await short.start()
        with pytest.raises(InputTooLongError) as too_long:
            await short.embed(job("a", "w " * 20, max_total_tokens=15))
        assert too_long.value.index == 1 and too_long.value.n_tokens == 22
        with pytest.raises(TooManyTokensError) as info:
            await short.embed(job("w " * 20, "v " * 20, max_total_tokens=15, truncate=True))
        assert info.value.n_tokens == 20  # 10 + 10 after truncation
        await short.aclose()

    asyncio.run(main())


def test_token_bound_is_an_upper_bound() -> None:
    assert token_bound(["abc"], 8192) == 18 * 3 + 3
    assert token_bound(["x" * 10_000, "y"], 8192) == 8192 + 21  # no input counts beyond the per-input limit

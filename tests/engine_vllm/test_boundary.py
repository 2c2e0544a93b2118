"""The engine's boundary: every foreign failure becomes an error of the gateway's tree.

A real vLLM cannot be made to time out, send a proxy's HTML page or a ragged vector on demand, so
these faults come from an ``httpx.MockTransport`` that otherwise answers like vLLM 0.32 (its
real behaviour is tested in test_real_vllm.py). The unreachable case uses a real closed port.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest

from engine_vllm import VLLMEngine
from engine_vllm.settings import VLLMEngineSettings
from engine_vllm.tokens import LocalTokenizer
from gateway.contract import (
    EmbedGatewayError,
    EmbedJob,
    EngineError,
    EngineOverloadedError,
    EngineTimeoutError,
    EngineUnavailableError,
    InputTooLongError,
    Task,
    UnsupportedTaskError,
)
from tests.support.server import free_port

T = TypeVar("T")
DIM = 8


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class FakeVLLM:
    """Answers like vLLM: one token per word between <s> (0) and </s> (2), a 400 over
    ``max_model_len``, usage per request; ``embeddings`` scripts faults."""

    def __init__(self, *, models: list[dict[str, Any]] | None = None, max_model_len: int = 8194,
                 tokenizer: LocalTokenizer | None = None, pooling: str = "absent") -> None:
        self.models = models if models is not None else [{"id": "jina", "max_model_len": max_model_len}]
        self.max_model_len = max_model_len
        #: tokenizes with this (a gateway given the same file then sends ids) instead of one token per word
        self.tokenizer = tokenizer
        #: ``POST /pooling``: "absent" (404, as before vLLM had it), "same" (as /v1/embeddings),
        #: "other" (other vectors), "refuse" (400), "unreachable" (the connection fails)
        self.pooling = pooling
        self.embeddings: Callable[[dict[str, Any]], httpx.Response] | None = None
        self.requests: list[tuple[str, dict[str, Any] | None]] = []
        self.headers: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.url.path, body))
        self.headers.append(request.headers)
        if request.url.path == "/health":
            return httpx.Response(200)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": self.models})
        if request.url.path == "/tokenize":
            assert body is not None
            return httpx.Response(200, json={"count": 0, "tokens": self._ids(body["prompt"])})
        if request.url.path == "/v1/embeddings":
            assert body is not None
            if self.embeddings is not None and not (body["input"] == ["dimension probe"]):
                return self.embeddings(body)
            return self._answer(body, "embedding")
        if request.url.path == "/pooling" and self.pooling != "absent":
            assert body is not None and body["task"] == "embed"
            if self.pooling == "unreachable":
                raise httpx.ConnectError("refused")
            if self.pooling == "refuse":
                return httpx.Response(400, json={"error": {"message": "unknown field", "type": "BadRequestError"}})
            return self._answer(body, "data", shift=1.0 if self.pooling == "other" else 0.0)
        return httpx.Response(404, json={"detail": "Not Found"})

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.encode([text])[0] if self.tokenizer is not None else [0, *[10] * len(text.split()), 2]

    def _answer(self, body: dict[str, Any], field: str, shift: float = 0.0) -> httpx.Response:
        """Each input's row holds its token count (plus ``shift``); rows under ``field``."""
        ids = [x if isinstance(x, list) else self._ids(x) for x in body["input"]]
        if any(len(x) > self.max_model_len for x in ids):
            return httpx.Response(400, json={"error": {"message": "maximum context length", "type": "BadRequestError"}})
        rows = [np.full(DIM, float(len(x)) + shift, dtype="<f4") for x in ids]
        data = [{"index": i, "object": "embedding", field: base64.b64encode(r.tobytes()).decode()} for i, r in enumerate(rows)]
        usage = {"prompt_tokens": sum(len(x) for x in ids), "total_tokens": sum(len(x) for x in ids)}
        return httpx.Response(200, json={"object": "list", "data": data, "usage": usage})

    def embeds(self) -> list[dict[str, Any]]:
        return [b for p, b in self.requests if p == "/v1/embeddings" and b and b["input"] != ["dimension probe"]]


def engine(fake: FakeVLLM, **settings: Any) -> VLLMEngine:
    return VLLMEngine(VLLMEngineSettings(enabled=True, url="http://vllm.test", **settings), transport=httpx.MockTransport(fake))


def job(*texts: str, task: Task | None = Task.TEXT_MATCHING, **kw: Any) -> EmbedJob:
    return EmbedJob(inputs=texts, task=task, **kw)


async def embed_once(e: VLLMEngine, j: EmbedJob) -> Any:
    await e.start()
    try:
        return await e.embed(j)
    finally:
        await e.aclose()


def test_happy_path_counts_tokens_and_sends_raw_full_vectors_request() -> None:
    fake = FakeVLLM()
    result = run(embed_once(engine(fake, api_key="k"), job("a b c", "d")))
    assert result.vectors.shape == (2, DIM) and result.engine == "vllm"
    assert result.token_counts == (8,)  # <s> + words + </s>, twice: the call's usage
    np.testing.assert_array_equal(result.vectors[:, 0], [5.0, 3.0])  # rows in input order
    sent = fake.embeds()
    assert [b["input"] for b in sent] == [["a b c", "d"]]  # one call for the job, no /tokenize
    assert not [p for p, _ in fake.requests if p == "/tokenize"]
    assert all(b["model"] == "jina" and b["use_activation"] is False and "dimensions" not in b for b in sent)
    assert all(h["authorization"] == "Bearer k" for h in fake.headers)


@pytest.mark.parametrize(
    ("exc", "want"),
    [
        (httpx.ConnectError("refused"), EngineUnavailableError),
        (httpx.RemoteProtocolError("peer closed connection"), EngineUnavailableError),
        (httpx.ReadError("reset"), EngineUnavailableError),
        (httpx.ConnectTimeout("slow"), EngineUnavailableError),
        (httpx.ReadTimeout("slow"), EngineTimeoutError),
        (httpx.PoolTimeout("busy"), EngineOverloadedError),
    ],
)
def test_transport_failures(exc: Exception, want: type[EmbedGatewayError]) -> None:
    fake = FakeVLLM()

    def boom(body: dict[str, Any]) -> httpx.Response:
        raise exc

    fake.embeddings = boom
    with pytest.raises(want) as info:
        run(embed_once(engine(fake), job("x")))
    assert type(info.value) is want and info.value.engine == "vllm"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("status", "headers", "want", "retry_after"),
    [
        (429, {"retry-after": "7"}, EngineOverloadedError, 7.0),
        (503, {}, EngineUnavailableError, None),
        (500, {}, EngineUnavailableError, None),
        (401, {}, EngineUnavailableError, None),
        (404, {}, EngineUnavailableError, None),
        (408, {}, EngineTimeoutError, None),
        (400, {}, EngineError, None),
        (422, {}, EngineError, None),
    ],
)
def test_vllm_error_statuses(status: int, headers: dict[str, str], want: type[EmbedGatewayError], retry_after: float | None) -> None:
    fake = FakeVLLM()
    fake.embeddings = lambda body: httpx.Response(
        status, headers=headers, json={"error": {"message": "secret /models/path detail", "type": "X", "code": status}}
    )
    with pytest.raises(want) as info:
        run(embed_once(engine(fake), job("x")))
    assert type(info.value) is want
    assert "/models/path" not in info.value.message  # vLLM's text goes to the log, not to clients
    if retry_after is not None:
        assert info.value.retry_after == retry_after  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>bad gateway</html>"),
        httpx.Response(200, json={"data": [], "usage": {"prompt_tokens": 3}}),  # no vector for the input
        httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0]}]}),  # no usage
        httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0]}], "usage": {"prompt_tokens": 0}}),
    ],
)
def test_malformed_responses_are_engine_errors(response: httpx.Response) -> None:
    fake = FakeVLLM()
    fake.embeddings = lambda body: response
    with pytest.raises(EngineError):
        run(embed_once(engine(fake), job("x", "y")))


# vLLM embeds it and usage says too long / vLLM refuses it / vLLM's limit is the gateway's (the job is
# sent as one call, which vLLM refuses: then one call per input finds the over-long one)
@pytest.mark.parametrize("max_model_len", [8194, 20, 16])
def test_over_long_input_is_the_hf_engines_400_unless_truncate(max_model_len: int) -> None:
    long = " ".join(["w"] * 20)  # 22 tokens
    with pytest.raises(InputTooLongError) as info:
        run(embed_once(engine(FakeVLLM(max_model_len=max_model_len), max_input_tokens=16), job("short", long, "also " * 30)))
    assert (info.value.index, info.value.n_tokens, info.value.limit) == (1, 22, 16)  # the first over-long input
    assert info.value.param == "input[1]"

    fake = FakeVLLM(max_model_len=max_model_len)
    result = run(embed_once(engine(fake, max_input_tokens=16), job("short", long, truncate=True)))
    assert result.token_counts == (3, 16)
    assert [0, *[10] * 14, 2] in [b["input"][0] for b in fake.embeds()]  # first 15 tokens and </s>, as ids


@pytest.mark.parametrize(
    ("max_model_len", "limit", "texts", "calls"),
    [
        (16, 16, ("w " * 10, "v " * 10), 1),  # vLLM enforces the gateway's limit itself: one call
        (8194, 8192, ("short", "also short"), 1),  # too short to reach the limit whatever the tokenizer: one call
        (8194, 16, ("w " * 10, "v"), 2),  # could be over the limit unnoticed by vLLM: one call per input
    ],
)
def test_a_job_is_one_call_only_when_no_over_long_input_can_hide_in_it(
    max_model_len: int, limit: int, texts: tuple[str, ...], calls: int
) -> None:
    fake = FakeVLLM(max_model_len=max_model_len)
    result = run(embed_once(engine(fake, max_input_tokens=limit), job(*texts)))
    assert len(fake.embeds()) == calls
    assert sum(result.token_counts) == sum(len(t.split()) + 2 for t in texts)
    np.testing.assert_array_equal(result.vectors[:, 0], [len(t.split()) + 2 for t in texts])


def test_health_probes_do_not_wait_for_busy_embedding_connections() -> None:
    async def main() -> None:
        release = asyncio.Event()
        fake = FakeVLLM()

        async def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/v1/embeddings" and b"dimension probe" not in request.content:
                await release.wait()
            return fake(request)

        e = VLLMEngine(VLLMEngineSettings(enabled=True, url="http://vllm.test", max_connections=1, health_timeout=0.5),
                       transport=httpx.MockTransport(handler))
        await e.start()
        busy = asyncio.create_task(e.embed(job("a")))
        await asyncio.sleep(0.05)  # the only embedding connection is taken
        health = await e.check_health()
        assert health.ok, health.detail
        release.set()
        assert (await busy).token_counts == (3,)
        await e.aclose()

    run(main())


def test_a_refusal_of_an_input_within_the_limit_stays_an_engine_error() -> None:
    fake = FakeVLLM()
    fake.embeddings = lambda body: httpx.Response(400, json={"error": {"message": "weird", "type": "BadRequestError"}})
    with pytest.raises(EngineError) as info:
        run(embed_once(engine(fake), job("two words")))
    assert not isinstance(info.value, InputTooLongError)
    assert [p for p, _ in fake.requests if p == "/tokenize"]  # it was counted first


def test_an_engine_failure_wins_over_an_over_long_input() -> None:
    fake = FakeVLLM()
    fake.embeddings = lambda body: (httpx.Response(503) if body["input"] == ["short"] else
                                    httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0] * DIM}],
                                                              "usage": {"prompt_tokens": 99}}))
    with pytest.raises(EngineUnavailableError):  # retryable: another engine will give the client its 400
        run(embed_once(engine(fake, max_input_tokens=16), job("short", "long text")))


def test_other_tasks_and_token_ids_are_refused() -> None:
    for j in (job("x", task=Task.RETRIEVAL_QUERY), job("x", task=None), EmbedJob(inputs=[(5, 6)], task=Task.TEXT_MATCHING)):
        with pytest.raises(UnsupportedTaskError):
            run(embed_once(engine(FakeVLLM()), j))
    caps = engine(FakeVLLM()).capabilities
    assert caps.tasks == frozenset([Task.TEXT_MATCHING]) and not caps.token_ids and not caps.late_chunking


def test_passed_deadline_is_a_timeout() -> None:
    with pytest.raises(EngineTimeoutError):
        run(embed_once(engine(FakeVLLM()), job("x", deadline=0.0)))


async def _health_and_refusal(e: VLLMEngine) -> tuple[Any, EngineUnavailableError]:
    """Start an engine that cannot serve: its health, and the error a job gets."""
    await e.start()
    try:
        health = await e.check_health()
        with pytest.raises(EngineUnavailableError) as info:
            await e.embed(job("x"))
        return health, info.value
    finally:
        await e.aclose()


@pytest.mark.parametrize(
    ("models", "settings", "fragment"),
    [
        ([{"id": "a"}, {"id": "b"}], {}, "serves several models (a, b); set engines.vllm.model"),
        ([{"id": "a"}], {"model": "jina"}, "does not serve 'jina' (it serves a)"),
        ([{"id": "a", "max_model_len": 512}], {}, "start vLLM with --max-model-len 8192"),
    ],
)
def test_discovery_problems_keep_the_engine_out_and_say_why(models: list[dict[str, Any]], settings: dict[str, Any], fragment: str) -> None:
    e = engine(FakeVLLM(models=models), **settings)
    health, err = run(_health_and_refusal(e))  # start does not raise: the engine just is not usable yet
    assert not health.ok and fragment in health.detail and fragment in err.message


def test_discovery_learns_model_and_dimension() -> None:
    e = engine(FakeVLLM())

    async def go() -> Any:
        await e.start()
        try:
            return await e.check_health()
        finally:
            await e.aclose()

    health = run(go())
    assert health.ok and health.extra["model"] == "jina" and health.extra["dimensions"] == DIM
    assert e.capabilities.dimensions == DIM
    # without a tokenizer nothing is timed or shared: vLLM counts, one call per request
    assert health.extra["tokenizer"] == "vllm" and "shared_calls" not in health.extra


def test_unreachable_vllm_real_socket() -> None:
    port = free_port()  # nothing listens there
    e = VLLMEngine(VLLMEngineSettings(enabled=True, url=f"http://127.0.0.1:{port}", connect_timeout=1))
    health, err = run(_health_and_refusal(e))  # start does not raise: it is probed back later
    assert not health.ok and "unreachable" in health.detail
    assert "unreachable" in err.message and err.engine == "vllm"


async def _busy_jobs(e: VLLMEngine, fake: FakeVLLM, texts: list[str]) -> tuple[Any, list[Any]]:
    """Health after discovery, then one job per text all at once on a vLLM that takes a moment to
    answer: the first goes alone as text, the others wait and go as token ids."""
    await e.start()
    try:
        health = await e.check_health()
        return health, list(await asyncio.gather(*(e.embed(job(t)) for t in texts)))
    finally:
        await e.aclose()


def _slow(fake: FakeVLLM) -> httpx.MockTransport:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        return fake(request)

    return httpx.MockTransport(handler)


TEXTS = ["the first one", "a second text, longer than the first", "drei", "vier fünf sechs sieben"]


@pytest.mark.parametrize(("pooling", "route"), [
    ("same", "/pooling"), ("absent", "/v1/embeddings"), ("other", "/v1/embeddings"), ("refuse", "/v1/embeddings"),
])
def test_token_ids_go_to_pooling_only_where_it_answers_as_embeddings_does(original_dir: Path, pooling: str, route: str) -> None:
    tokenizer = LocalTokenizer(original_dir / "tokenizer.json")
    fake = FakeVLLM(tokenizer=tokenizer, pooling=pooling)
    e = VLLMEngine(VLLMEngineSettings(enabled=True, url="http://vllm.test", tokenizer=str(original_dir), max_calls=1),
                   transport=_slow(fake))
    health, results = run(_busy_jobs(e, fake, TEXTS))
    assert health.ok and health.extra["tokenizer"] == str(original_dir / "tokenizer.json")
    assert health.extra["ids_route"] == route
    for text, result in zip(TEXTS, results, strict=True):  # each job its own row and count, whichever route
        n = len(tokenizer.encode([text])[0])
        assert result.token_counts == (n,) and result.vectors.tolist() == [[float(n)] * DIM]
    calls = [(p, b) for p, b in fake.requests if b is not None and isinstance(b.get("input"), list)
             and b["input"] and isinstance(b["input"][0], list) and len(b["input"]) < 5]  # not the route check's 5
    assert calls and {p for p, _ in calls} == {route}  # the jobs' ids went where the check said


def test_a_vllm_unreachable_during_the_route_check_fails_discovery_until_it_answers(original_dir: Path) -> None:
    fake = FakeVLLM(tokenizer=LocalTokenizer(original_dir / "tokenizer.json"), pooling="unreachable")
    e = VLLMEngine(VLLMEngineSettings(enabled=True, url="http://vllm.test", tokenizer=str(original_dir)),
                   transport=httpx.MockTransport(fake))

    async def go() -> tuple[Any, Any]:
        await e.start()
        try:
            first = await e.check_health()
            fake.pooling = "same"
            return first, await e.check_health()
        finally:
            await e.aclose()

    first, then = run(go())
    assert not first.ok and "unreachable" in first.detail  # not taken as "no such route"
    assert then.ok and then.extra["ids_route"] == "/pooling"


@pytest.mark.parametrize(("limit", "shared"), [(1.0, False), (None, True), (10_000.0, True)])
def test_requests_share_calls_only_where_vllm_answers_a_short_text_fast(
    original_dir: Path, limit: float | None, shared: bool
) -> None:
    tokenizer = LocalTokenizer(original_dir / "tokenizer.json")
    fake = FakeVLLM(tokenizer=tokenizer, pooling="same")
    e = VLLMEngine(VLLMEngineSettings(enabled=True, url="http://vllm.test", tokenizer=str(original_dir), max_calls=1,
                                      share_below_ms=limit), transport=_slow(fake))  # 10 ms a call
    health, results = run(_busy_jobs(e, fake, TEXTS * 2))
    assert health.ok and health.extra["shared_calls"] is shared and health.extra["idle_call_ms"] >= 10
    assert [r.token_counts for r in results] == [(len(ids),) for ids in tokenizer.encode(TEXTS * 2)]
    co = e._coalescer
    assert co.jobs == len(TEXTS) * 2
    if shared:
        assert co.calls < co.jobs  # the first alone, the rest waited for the one call and went together
    else:
        assert co.calls == co.jobs  # every job on a call of its own, at once

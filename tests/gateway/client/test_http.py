"""The gateway client against the real app over HTTP (FakeEngine for scripted overload)."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest

from gateway.client import AsyncGatewayClient, GatewayClient, GatewayRequestError, RetryPolicy
from gateway.client.http import build_body, embeddings_url, parse_embeddings
from gateway.config import load_settings
from gateway.contract import EmbedJob, EngineOverloadedError, Task
from tests.support.fakes import FakeEngine, fake_vector
from tests.support.server import free_port, live_server


def overloaded_first(n: int, retry_after: float = 2):  # type: ignore[no-untyped-def]
    counter = itertools.count()

    def fail(job: EmbedJob) -> EngineOverloadedError | None:
        return EngineOverloadedError("queue full", retry_after=retry_after) if next(counter) < n else None

    return fail


@pytest.mark.parametrize(
    ("base", "url"),
    [("http://h:1", "http://h:1/v1/embeddings"), ("http://h:1/v1/", "http://h:1/v1/embeddings"),
     ("http://h:1/v1/embeddings", "http://h:1/v1/embeddings")],
)
def test_embeddings_url(base: str, url: str) -> None:
    assert embeddings_url(base) == url


def test_body_and_response_shapes() -> None:
    assert build_body(["a"], model=None, task=None, dimensions=None) == {"input": ["a"], "encoding_format": "float"}
    assert build_body(["a"], model="m", task="none", dimensions=8, normalized=False, truncate=True) == {
        "input": ["a"], "encoding_format": "float", "model": "m", "task": "none", "dimensions": 8,
        "normalized": False, "truncate": True,
    }
    got = parse_embeddings({"data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}],
                            "usage": {"total_tokens": 7}}, 2)
    assert got.vectors.tolist() == [[1.0], [2.0]] and got.total_tokens == 7
    with pytest.raises(GatewayRequestError, match="2 inputs"):
        parse_embeddings({"data": [{"index": 0, "embedding": [1.0]}]}, 2)
    with pytest.raises(GatewayRequestError, match="not an embeddings list"):
        parse_embeddings({"object": "list"}, 1)


def test_sync_client_waits_out_429_with_retry_after() -> None:
    engine = FakeEngine(fail_with=overloaded_first(2, retry_after=2))
    slept: list[float] = []
    with live_server(load_settings(), {"fake": engine}) as server:
        client = GatewayClient(server.url, sleep=slept.append)
        out = client.embed(["hello", "world"], model=None, task="retrieval.passage", dimensions=16)
        client.close()
    assert slept == [2.0, 2.0]  # the server's Retry-After, not a guess
    assert client.stats.retries == 2 and client.stats.statuses == {429: 2}
    assert out.vectors.shape == (2, 16)
    want = fake_vector("hello", Task.RETRIEVAL_PASSAGE, 64)[:16]
    np.testing.assert_allclose(out.vectors[0], want / np.linalg.norm(want), atol=1e-6)
    assert len(engine.calls) == 3 and all(c.task is Task.RETRIEVAL_PASSAGE for c in engine.calls)


def test_async_client_gives_up_after_max_retries_with_the_servers_message() -> None:
    engine = FakeEngine(fail_with=overloaded_first(10, retry_after=1))
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    async def go(url: str) -> None:
        client = AsyncGatewayClient(url, sleep=sleep, policy=RetryPolicy(max_retries=3))
        try:
            await client.embed(["x"], model=None, task=None, dimensions=None)
        finally:
            await client.aclose()

    with live_server(load_settings(), {"fake": engine}) as server:
        with pytest.raises(GatewayRequestError) as info:
            asyncio.run(go(server.url))
    assert info.value.status == 429 and "after 3 retries" in info.value.message and "queue full" in info.value.message
    assert slept == [1.0, 1.0, 1.0]


def test_client_errors_are_final_and_name_the_input() -> None:
    with live_server(load_settings(), {"fake": FakeEngine()}) as server:
        client = GatewayClient(server.url, sleep=lambda s: pytest.fail("a 400 must not be retried"))
        with pytest.raises(GatewayRequestError) as info:
            client.embed(["ok", ""], model=None, task=None, dimensions=None)
        with pytest.raises(GatewayRequestError, match="does not exist") as missing:
            client.embed(["ok"], model="no-such-alias", task=None, dimensions=None)
        client.close()
    assert info.value.status == 400 and "input[1]" in info.value.message
    assert missing.value.status == 404 and missing.value.code == "model_not_found"


@pytest.mark.parametrize(("param", "index"), [("input[3]", 3), ("input[12]", 12), ("input", None), (None, None),
                                              ("input[x]", None), ("dimensions", None)])
def test_input_index_from_param(param: str | None, index: int | None) -> None:
    assert GatewayRequestError("m", param=param).input_index == index


def test_unreachable_gateway_is_a_clear_error() -> None:
    client = GatewayClient(f"http://127.0.0.1:{free_port()}", sleep=lambda s: None, policy=RetryPolicy(max_retries=1))
    with pytest.raises(GatewayRequestError, match="cannot reach the gateway"):
        client.embed(["x"], model=None, task=None, dimensions=None)
    assert client.stats.retries == 1


def test_sparse_body_and_response() -> None:
    body = build_body(["a", "b"], model="bge-m3", task=None, dimensions=None, sparse=True)
    assert body["return_sparse"] is True
    assert "return_sparse" not in build_body(["a"], model=None, task=None, dimensions=None)
    payload = {"data": [
        {"index": 1, "embedding": [0.0, 1.0], "sparse_embedding": {"indices": [9, 2], "values": [0.5, 0.25]}},
        {"index": 0, "embedding": [1.0, 0.0], "sparse_embedding": {"indices": [], "values": []}},
    ], "usage": {"total_tokens": 4}}
    got = parse_embeddings(payload, 2, sparse=True)
    assert got.sparse is not None and len(got.sparse) == 2
    assert got.sparse[0].indices.tolist() == [] and got.sparse[1].indices.dtype == np.int64
    assert got.sparse[1].indices.tolist() == [2, 9] and got.sparse[1].values.tolist() == [0.25, 0.5]
    assert got.sparse[1].values.dtype == np.float32
    assert parse_embeddings(payload, 2).sparse is None
    with pytest.raises(GatewayRequestError, match="not an embeddings list"):
        parse_embeddings({"data": [{"index": 0, "embedding": [1.0]}]}, 1, sparse=True)

"""The ONNX Runtime peer the bench races: a real server over HTTP answering like the gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.bench.servers import Server, gateway_server, ort_server

TEXTS = ["a short fact about cats", "the user prefers tea over coffee in the morning " * 4, "hi"]


@pytest.fixture(scope="module")
def peer(onnx_dir: Path, original_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    srv, url = ort_server(onnx_dir, str(original_dir), 1, tmp_path_factory.mktemp("ort-log"))
    srv.start(timeout=180)
    try:
        yield url
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def gateway(original_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    srv: Server
    srv, url = gateway_server("gateway-hf", {"EMBED_GATEWAY_ENGINES__HF__MODEL": str(original_dir),
                                             "EMBED_GATEWAY_ENGINES__HF__DEVICE": "cpu",
                                             "EMBED_GATEWAY_SERVER__LOG_LEVEL": "warning"},
                              tmp_path_factory.mktemp("gw-log"))
    srv.start(timeout=180)
    try:
        yield url
    finally:
        srv.stop()


def _vectors(url: str, **body: object) -> tuple[np.ndarray, dict[str, int]]:
    r = httpx.post(url + "/v1/embeddings", json={"model": "jina-embeddings-v3", **body}, timeout=60)
    assert r.status_code == 200, r.text
    data = r.json()
    assert [d["index"] for d in data["data"]] == list(range(len(data["data"])))
    return np.array([d["embedding"] for d in data["data"]], dtype=np.float32), data["usage"]


@pytest.mark.parametrize("task", ["text-matching", "retrieval.query"])
def test_the_ort_peer_answers_with_the_gateways_vectors(peer: str, gateway: str, task: str) -> None:
    theirs, usage = _vectors(peer, input=TEXTS, task=task)
    ours, our_usage = _vectors(gateway, input=TEXTS, task=task)
    assert theirs.shape == ours.shape and usage == our_usage  # same tokens (instructions included)
    np.testing.assert_allclose(np.linalg.norm(theirs, axis=1), 1.0, rtol=1e-5)
    assert (theirs * ours).sum(1).min() >= 0.99999


def test_concurrent_requests_each_get_their_own_vector(peer: str) -> None:
    import asyncio

    async def go() -> list[np.ndarray]:
        async with httpx.AsyncClient(timeout=60) as c:
            rs = await asyncio.gather(*(c.post(peer + "/v1/embeddings", json={"input": t, "task": "text-matching"})
                                        for t in TEXTS * 3))
        return [np.array(r.json()["data"][0]["embedding"]) for r in rs]

    got = asyncio.run(go())
    alone, _ = _vectors(peer, input=TEXTS, task="text-matching")
    for i, v in enumerate(got):
        assert float(v @ alone[i % len(TEXTS)]) >= 0.99999


@pytest.mark.parametrize("body", [{"input": ""}, {"input": "x", "task": "none"}, {"input": "x", "task": "nope"}])
def test_bad_requests_get_a_4xx(peer: str, body: dict[str, object]) -> None:
    r = httpx.post(peer + "/v1/embeddings", json=body, timeout=30)
    assert 400 <= r.status_code < 500, r.text

"""Two models behind one gateway, over real HTTP: jina-embeddings-v3 (tiny, in process) and BGE-M3
(tiny, in the published layout), each compared with its own independent reference
(jina: the fp32 reference of tests/support; BGE-M3: FlagEmbedding's ``BGEM3FlagModel``)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.support.harness import cosine
from tests.support.models import jina_and_bge_m3
from tests.support.server import LiveServer, live_server

TEXTS = ["the user likes coffee in the morning", "coffee coffee tea", "người dùng thích cà phê"]


@pytest.fixture(scope="module")
def m3_reference(m3_dir: Path) -> dict[str, Any]:
    from FlagEmbedding import BGEM3FlagModel

    model = BGEM3FlagModel(str(m3_dir), use_fp16=False, devices="cpu")
    return model.encode(TEXTS, return_dense=True, return_sparse=True, return_colbert_vecs=True)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def server(original_dir: Path, m3_dir: Path) -> Iterator[LiveServer]:
    settings = jina_and_bge_m3(original_dir, m3_dir, bge_m3={"aliases": {"m3-sparse-ready": {"task": None}}})
    with live_server(settings) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def test_each_model_by_name_equals_its_own_reference(client: httpx.Client, reference, m3_reference) -> None:  # type: ignore[no-untyped-def]
    jina = client.post("/v1/embeddings", json={"input": TEXTS, "task": "retrieval.query"})
    assert jina.status_code == 200, jina.text
    want = reference.encode(TEXTS, task="retrieval.query")
    for row, ref in zip(jina.json()["data"], want, strict=True):
        assert cosine(row["embedding"], ref) >= 0.99999
    assert jina.headers["x-embed-engine"] == "hf"

    m3 = client.post("/v1/embeddings", json={"model": "bge-m3", "input": TEXTS})
    assert m3.status_code == 200, m3.text
    assert m3.json()["model"] == "bge-m3" and m3.headers["x-embed-engine"] == "bge"
    for row, ref in zip(m3.json()["data"], m3_reference["dense_vecs"], strict=True):
        assert cosine(row["embedding"], ref) >= 0.99999
        assert abs(np.linalg.norm(row["embedding"]) - 1) < 1e-5


def test_sparse_weights_equal_flagembedding(client: httpx.Client, m3_reference) -> None:  # type: ignore[no-untyped-def]
    got = client.post("/v1/embeddings", json={"model": "bge-m3", "input": TEXTS, "return_sparse": True})
    assert got.status_code == 200, got.text
    tei = client.post("/embed_sparse", json={"inputs": TEXTS})  # the default model is jina: no sparse output
    assert tei.status_code == 400 or tei.status_code == 422, tei.text
    for row, ref in zip(got.json()["data"], m3_reference["lexical_weights"], strict=True):
        sparse = row["sparse_embedding"]
        mine = dict(zip(sparse["indices"], sparse["values"], strict=True))
        assert set(mine) == {int(k) for k in ref}
        for k, v in ref.items():
            assert abs(mine[int(k)] - float(v)) <= 1e-5
        assert sparse["indices"] == sorted(sparse["indices"])


def test_multivectors_equal_flagembedding(client: httpx.Client, m3_reference) -> None:  # type: ignore[no-untyped-def]
    got = client.post("/v1/embeddings", json={"model": "bge-m3", "input": TEXTS, "return_multivector": True})
    assert got.status_code == 200, got.text
    for row, ref in zip(got.json()["data"], m3_reference["colbert_vecs"], strict=True):
        rows = np.asarray(row["embedding"], dtype=np.float32)
        assert rows.shape == ref.shape
        np.testing.assert_allclose(rows, ref, atol=1e-5)


def test_outputs_and_dimensions_a_model_lacks_are_a_400_naming_what_it_offers(client: httpx.Client) -> None:
    sparse_on_jina = client.post("/v1/embeddings", json={"input": "x", "return_sparse": True})
    assert sparse_on_jina.status_code == 400
    assert "offers: dense" in sparse_on_jina.json()["error"]["message"]
    assert sparse_on_jina.json()["error"]["param"] == "return_sparse"
    truncated = client.post("/v1/embeddings", json={"model": "bge-m3", "input": "x", "dimensions": 16})
    assert truncated.status_code == 400 and truncated.json()["error"]["param"] == "dimensions"
    assert "not Matryoshka" in truncated.json()["error"]["message"]
    task = client.post("/v1/embeddings", json={"model": "bge-m3", "input": "x", "task": "retrieval.query"})
    assert task.status_code == 400 and task.json()["error"]["param"] == "task"
    assert "unknown task 'retrieval.query' for model 'bge-m3'" in task.json()["error"]["message"]


def test_an_unknown_model_is_a_404_listing_models_and_aliases(client: httpx.Client) -> None:
    got = client.post("/v1/embeddings", json={"model": "bge-m4", "input": "x"})
    assert got.status_code == 404
    message = got.json()["error"]["message"]
    assert "bge-m3" in message and "jina-embeddings-v3-query" in message


def test_models_lists_every_model_and_alias_with_what_it_offers(client: httpx.Client) -> None:
    cards = {c["id"]: c for c in client.get("/v1/models").json()["data"]}
    assert cards["bge-m3"]["model"] == "bge-m3" and cards["bge-m3"]["matryoshka"] is False
    assert cards["bge-m3"]["outputs"] == ["dense", "multivector", "sparse"]
    assert cards["bge-m3"]["tasks"] == ["none"]
    assert cards["m3-sparse-ready"]["model"] == "bge-m3"
    query = cards["jina-embeddings-v3-query"]
    assert query["model"] == "jina-embeddings-v3" and query["task"] == "retrieval.query"
    assert "retrieval.passage" in query["tasks"] and query["outputs"] == ["dense"]


def test_the_openai_sdk_reaches_each_model_by_name(server: LiveServer, m3_reference) -> None:  # type: ignore[no-untyped-def]
    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    got = sdk.embeddings.create(model="bge-m3", input=TEXTS)  # the SDK's default: base64
    for item, ref in zip(got.data, m3_reference["dense_vecs"], strict=True):
        assert cosine(item.embedding, ref) >= 0.99999
    jina = sdk.embeddings.create(model="jina-embeddings-v3", input=TEXTS[:1])
    assert len(jina.data[0].embedding) == len(base64.b64decode(
        httpx.post(f"{server.url}/v1/embeddings", json={"input": TEXTS[:1], "encoding_format": "base64"}
                   ).json()["data"][0]["embedding"])) // 4


def test_readiness_reports_each_model(client: httpx.Client) -> None:
    ready = client.get("/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert body["models"] == {"jina-embeddings-v3": "ready", "bge-m3": "ready"}
    assert body["tasks"]["bge-m3/none"] == ["bge"] and body["tasks"]["text-matching"] == ["hf"]


def test_info_shows_each_models_memory_and_engines(client: httpx.Client) -> None:
    info = client.get("/info").json()
    assert info["served_model_name"] == "jina-embeddings-v3"
    for model, engine in (("jina-embeddings-v3", "hf"), ("bge-m3", "bge")):
        held = info["models"][model]["resident_bytes"]
        assert held > 0 and held == info["engines"][engine]["resident_bytes"]
        assert info["engines"][engine]["served_model"] == model
    other = client.get("/info", params={"model": "bge-m3"}).json()
    assert other["served_model_name"] == "bge-m3" and other["routes"] == {"none": ["bge"]}
    assert client.get("/info", params={"model": "nope"}).status_code == 404

"""Jina's own clients, unchanged from PyPI, against the real app over real HTTP (the HF engine on
the tiny checkpoint, API keys on): LangChain's ``JinaEmbeddings`` and LlamaIndex's
``JinaEmbedding`` embed like ``/v1/embeddings`` and surface our errors as their own
``RuntimeError`` with our message (they read Jina's ``{"detail": ...}``); the openai SDK with a
base URL lacking ``/v1`` embeds and lists models.

Both Jina clients hard-code Jina's hosted URL; each is pointed at the gateway the way
docs/api.md tells a user to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import langchain_community.embeddings.jina as langchain_jina
import numpy as np
import openai
import pytest
from langchain_community.embeddings import JinaEmbeddings
from llama_index.embeddings.jinaai import JinaEmbedding
from llama_index.embeddings.jinaai.base import _JinaAPICaller

from gateway.config import load_settings
from tests.support.server import LiveServer, live_server

KEY = "sk-jina-clients-0123456789"
TEXTS = ["the user likes coffee in the morning", "người dùng thích cà phê", "用户喜欢咖啡"]
LONG = "memory project deadline friday " * 40  # over the 64-token limit below


@pytest.fixture(scope="module")
def server(original_dir: Path) -> Iterator[LiveServer]:
    settings = load_settings(
        engines={"hf": {"model": str(original_dir), "device": "cpu", "max_input_tokens": 64}},
        auth={"api_keys": [KEY]},
    )
    with live_server(settings) as s:
        yield s


def direct(server: LiveServer, **body: Any) -> np.ndarray:
    """The same request sent to /v1/embeddings by plain HTTP."""
    r = httpx.post(server.url + "/v1/embeddings", json=body, headers={"authorization": f"Bearer {KEY}"}, timeout=60)
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


def same(got: Any, want: np.ndarray) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=np.float32), want, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ LangChain's JinaEmbeddings


@pytest.fixture
def langchain(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> JinaEmbeddings:
    # the client posts to the module constant JINA_API_URL; a user sets it once, before embedding
    monkeypatch.setattr(langchain_jina, "JINA_API_URL", server.url + "/v1/embeddings")
    return JinaEmbeddings(jina_api_key=KEY, model_name="jina-embeddings-v3-passage")


def test_langchain_jina_embeds_like_v1_embeddings(server: LiveServer, langchain: JinaEmbeddings) -> None:
    want = direct(server, input=TEXTS, model="jina-embeddings-v3-passage")
    same(langchain.embed_documents(TEXTS), want)
    same([langchain.embed_query(TEXTS[1])], want[1:2])


def test_langchain_jina_surfaces_our_errors(server: LiveServer, langchain: JinaEmbeddings) -> None:
    with pytest.raises(RuntimeError, match=r"input\[1\] has \d+ tokens, more than the model maximum of 64"):
        langchain.embed_documents(["ok", LONG])  # it sends no truncate: over-long is an error
    wrong = JinaEmbeddings(jina_api_key="sk-wrong", model_name="jina-embeddings-v3")
    with pytest.raises(RuntimeError, match="API key"):
        wrong.embed_query("x")
    unknown = JinaEmbeddings(jina_api_key=KEY)  # its default model name, jina-embeddings-v2-base-en
    with pytest.raises(RuntimeError, match="the model 'jina-embeddings-v2-base-en' does not exist"):
        unknown.embed_query("x")


# ------------------------------------------------------------------ LlamaIndex's JinaEmbedding


def llama_index(server: LiveServer, **kwargs: Any) -> JinaEmbedding:
    """``JinaEmbedding`` accepts ``base_url=`` but builds its caller without it; its caller
    (``_JinaAPICaller``) takes a base URL and posts to ``{base_url}/embeddings``: give it ours."""
    model = kwargs.pop("model", "jina-embeddings-v3")
    embedding = JinaEmbedding(model=model, api_key=KEY, **kwargs)
    embedding._api = _JinaAPICaller(model=model, base_url=server.url + "/v1", api_key=KEY)
    return embedding


def test_llama_index_jina_embeds_like_v1_embeddings(server: LiveServer) -> None:
    emb = llama_index(server, task="retrieval.query", dimensions=32)
    want = direct(server, input=TEXTS, model="jina-embeddings-v3", task="retrieval.query", dimensions=32)
    same(emb.get_text_embedding_batch(TEXTS), want)
    same([emb.get_query_embedding(TEXTS[0])], want[:1])
    same([asyncio.run(emb.aget_query_embedding(TEXTS[2]))], want[2:3])


def test_llama_index_jina_binary_embeddings_are_the_signs(server: LiveServer) -> None:
    emb = llama_index(server, task="retrieval.passage", encoding_documents="ubinary", dimensions=64)
    bits = np.array(emb.get_text_embedding_batch(TEXTS))
    floats = direct(server, input=TEXTS, task="retrieval.passage", dimensions=64)
    assert bits.shape == floats.shape
    np.testing.assert_array_equal(bits, (floats > 0).astype(int))


def test_llama_index_jina_surfaces_our_errors(server: LiveServer) -> None:
    with pytest.raises(RuntimeError, match=r"dimensions must be between 1 and \d+; got 5000"):
        llama_index(server, dimensions=5000).get_query_embedding("x")
    with pytest.raises(RuntimeError, match=r"input\[0\] has \d+ tokens"):
        llama_index(server).get_text_embedding_batch([LONG])
    with pytest.raises(RuntimeError, match="unknown task 'retrieval'"):
        llama_index(server, task="retrieval").get_query_embedding("x")


# ------------------------------------------------------------------ the openai SDK without /v1


def test_openai_sdk_without_v1_embeds_and_lists_models(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
    listed = [m.id for m in client.models.list()]
    assert listed and listed == [m.id for m in openai.OpenAI(base_url=server.url + "/v1", api_key=KEY).models.list()]
    assert "jina-embeddings-v3-query" in listed
    assert client.models.retrieve("jina-embeddings-v3-query").id == "jina-embeddings-v3-query"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.models.retrieve("gpt-4")
    got = client.embeddings.create(input=TEXTS, model="jina-embeddings-v3-query")  # base64 on the wire
    same([d.embedding for d in got.data], direct(server, input=TEXTS, model="jina-embeddings-v3-query"))

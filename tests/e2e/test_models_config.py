"""The configuration of several models, as users write it, serving every model over real HTTP:
jina-embeddings-v3 (tiny, in process), BGE-M3 (tiny, in process), an e5-style
sentence-transformers model (tiny, in process), a jina-v5-style model as two per-task vLLM servers
(``kind: vllm``), and a hosted-style upstream (``kind: openai`` with its key in the environment).
Each model's vectors equal its own independent reference, and the real clients (the openai SDK,
LangChain, LlamaIndex, huggingface_hub's TEI client) reach every model by its name."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.config import load_settings
from tests.support.harness import cosine
from tests.support.server import LiveServer, free_port, live_server
from tests.support.vllm import VLLMServer, pooling_command

pytestmark = pytest.mark.slow

TEXTS = ["the user likes dark roast coffee", "berlin is the capital of germany"]
KEY_ENV = "EMBED_GATEWAY_TEST_UPSTREAM_KEY"
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the vLLM servers serve: a tiny BERT sentence-transformers checkpoint (mean + Normalize)."""
    from engine_hf.tools.st_checkpoint import write_st_checkpoint

    out = tmp_path_factory.mktemp("served-st")
    write_st_checkpoint(out, arch="bert")
    return out


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine_hf.tools.st_checkpoint import write_st_checkpoint

    out = tmp_path_factory.mktemp("e5")
    write_st_checkpoint(out, arch="xlm-roberta", prompts=E5_PROMPTS)
    return out


@pytest.fixture(scope="module")
def key() -> str:
    return "sk-test-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def servers(st_dir: Path, key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VLLMServer, VLLMServer]]:
    """Two real vLLM servers, one per task of the per-task model; the first also plays the hosted
    upstream and wants a key."""
    logs = tmp_path_factory.mktemp("vllm-logs")
    a = VLLMServer(st_dir, free_port(), logs / "a.log", "--served-model-name", "served", "--api-key", key,
                   command=pooling_command).start()
    b = VLLMServer(st_dir, free_port(), logs / "b.log", "--served-model-name", "served", command=pooling_command).start()
    try:
        yield a.wait_healthy(), b.wait_healthy()
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def server(original_dir: Path, m3_dir: Path, e5_dir: Path, servers: tuple[VLLMServer, VLLMServer],
           key: str) -> Iterator[LiveServer]:
    a, b = servers
    models = {
        "jina-embeddings-v3": {"default": True},
        "bge-m3": {"engines": {"bge": {"kind": "bge-m3", "model": str(m3_dir), "device": "cpu"}}},
        "multilingual-e5-small": {"engines": {"e5": {"kind": "sentence-transformers", "model": str(e5_dir),
                                                      "device": "cpu"}}},
        "jina-embeddings-v5-text-small": {
            "engines": {
                "v5-retrieval": {"kind": "vllm", "url": a.url, "api_key": key, "max_input_tokens": 64},
                "v5-matching": {"kind": "vllm", "url": b.url, "max_input_tokens": 64},
            },
            "routes": {"retrieval.query": ["v5-retrieval"], "retrieval.passage": ["v5-retrieval"],
                       "text-matching": ["v5-matching"]},
        },
        "hosted-small": {"engines": {"up": {"kind": "openai", "url": a.url + "/v1", "model": "served",
                                            "api_key_env": KEY_ENV}}},
    }
    settings = load_settings(
        engines={"hf": {"model": str(original_dir), "device": "cpu", "max_input_tokens": 64}},
        models=models, cache={"memory_bytes": 0},
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, key)
        with live_server(settings) as s:
            yield s


@pytest.fixture(scope="module")
def references(reference: Any, m3_dir: Path, e5_dir: Path, st_dir: Path) -> dict[str, Any]:
    """Each model's expected vectors for TEXTS, from its own reference implementation."""
    from FlagEmbedding import BGEM3FlagModel
    from sentence_transformers import SentenceTransformer

    served = SentenceTransformer(str(st_dir), device="cpu").encode(TEXTS)
    return {
        "jina-embeddings-v3": reference.encode(TEXTS, task="text-matching"),
        "bge-m3": BGEM3FlagModel(str(m3_dir), use_fp16=False, devices="cpu").encode(TEXTS)["dense_vecs"],
        "multilingual-e5-small": SentenceTransformer(str(e5_dir), device="cpu").encode(TEXTS, prompt_name="query"),
        "jina-embeddings-v5-text-small": served,
        "hosted-small": served,
    }


#: model -> (the task the request sends, the engine that must serve it)
CASES = {
    "jina-embeddings-v3": (None, "hf"),
    "bge-m3": (None, "bge"),
    "multilingual-e5-small": ("retrieval.query", "e5"),
    "jina-embeddings-v5-text-small": ("retrieval.query", "v5-retrieval"),
    "hosted-small": (None, "up"),
}


def _close(got: Any, want: Any) -> None:
    for row, ref in zip(got, want, strict=True):
        assert cosine(row, ref) >= 0.99999 if len(ref) else False


@pytest.mark.parametrize("model", sorted(CASES))
def test_every_model_serves_its_own_vectors(server: LiveServer, references: dict[str, Any], model: str) -> None:
    task, engine = CASES[model]
    body: dict[str, Any] = {"model": model, "input": TEXTS, **({"task": task} if task else {})}
    got = httpx.post(f"{server.url}/v1/embeddings", json=body, timeout=60)
    assert got.status_code == 200, got.text
    assert got.headers["x-embed-engine"] == engine
    _close([d["embedding"] for d in got.json()["data"]], references[model])


def test_each_task_of_the_per_task_model_goes_to_its_own_server(server: LiveServer, references: dict[str, Any]) -> None:
    for task, engine in (("retrieval.passage", "v5-retrieval"), ("text-matching", "v5-matching")):
        got = httpx.post(f"{server.url}/v1/embeddings", timeout=60,
                         json={"model": "jina-embeddings-v5-text-small", "input": TEXTS, "task": task})
        assert got.status_code == 200 and got.headers["x-embed-engine"] == engine, got.text
        _close([d["embedding"] for d in got.json()["data"]], references["jina-embeddings-v5-text-small"])
    none = httpx.post(f"{server.url}/v1/embeddings", json={"model": "jina-embeddings-v5-text-small", "input": "x"})
    assert none.status_code == 400 and none.json()["error"]["param"] == "task"
    ready = httpx.get(f"{server.url}/ready").json()
    assert ready["status"] == "ready" and set(ready["models"]) == set(CASES)


def test_the_openai_sdk_reaches_every_model(server: LiveServer, references: dict[str, Any]) -> None:
    import openai

    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    for model, (task, _) in CASES.items():
        extra = {"extra_body": {"task": task}} if task else {}
        got = sdk.embeddings.create(model=model, input=TEXTS, **extra)  # base64, the SDK's default
        _close([d.embedding for d in got.data], references[model])


def test_langchain_and_llamaindex_reach_every_model_by_name(server: LiveServer, references: dict[str, Any]) -> None:
    from langchain_openai import OpenAIEmbeddings
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    for model in ("jina-embeddings-v3", "bge-m3", "hosted-small"):  # models whose name alone picks the task
        lc = OpenAIEmbeddings(model=model, base_url=f"{server.url}/v1", api_key="unused",  # type: ignore[arg-type]
                              check_embedding_ctx_length=False)
        _close(lc.embed_documents(TEXTS), references[model])
        li = OpenAILikeEmbedding(model_name=model, api_base=f"{server.url}/v1", api_key="unused")
        _close(li.get_text_embedding_batch(TEXTS), references[model])


def test_the_tei_client_reaches_every_model_by_its_url(server: LiveServer, references: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants
    from huggingface_hub import InferenceClient

    # the suite sets HF_HUB_OFFLINE, which refuses every call; these go to the loopback server only
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    for model in ("jina-embeddings-v3", "bge-m3", "hosted-small"):
        hub = InferenceClient(model=f"{server.url}/models/{model}")
        got = np.asarray([hub.feature_extraction(t) for t in TEXTS]).reshape(len(TEXTS), -1)
        _close(got, references[model])
    e5 = InferenceClient(model=f"{server.url}/models/multilingual-e5-small")
    got = np.asarray([e5.feature_extraction(t, prompt_name="query") for t in TEXTS]).reshape(len(TEXTS), -1)
    _close(got, references["multilingual-e5-small"])
    from langchain_huggingface import HuggingFaceEndpointEmbeddings
    from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

    for model in ("bge-m3", "hosted-small"):  # TEI's LangChain and LlamaIndex clients, on the model's base URL
        # LangChain refuses a URL as `model`: the URL reaches InferenceClient through model_kwargs
        lc = HuggingFaceEndpointEmbeddings(model="BAAI/bge-m3", model_kwargs={"model": f"{server.url}/models/{model}"})
        _close(lc.embed_documents(TEXTS), references[model])
        li = TextEmbeddingsInference(model_name=model, base_url=f"{server.url}/models/{model}")
        _close(li.get_text_embedding_batch(TEXTS), references[model])
    info = httpx.get(f"{server.url}/models/bge-m3/info").json()
    assert info["served_model_name"] == "bge-m3" and info["routes"] == {"none": ["bge"]}

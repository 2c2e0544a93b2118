"""TEI's API on the gateway: the real app over HTTP (HF engine, tiny checkpoint), real TEI clients
from PyPI (huggingface_hub's InferenceClient, LangChain's HuggingFaceEndpointEmbeddings, LlamaIndex's
TextEmbeddingsInference), vectors equal to /v1/embeddings', TEI's error shapes and statuses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from huggingface_hub import InferenceClient

from gateway.config import load_settings
from gateway.contract import EngineError, EngineOverloadedError, EngineUnavailableError, Task
from tests.support.fakes import FakeEngine
from tests.support.harness import cosine
from tests.support.server import LiveServer, live_server

TEXTS = ["the user likes coffee in the morning", "người dùng thích cà phê", "用户喜欢咖啡"]
TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]
#: far over the 64-token limit, with a start and an end that differ (left and right truncation disagree)
LONG = " ".join(["the user likes coffee in the morning"] * 12 + ["用户喜欢咖啡 người dùng thích cà phê"] * 12)
KEY = "tei-key-0123456789"


def _settings(path: Path, **over: Any):  # type: ignore[no-untyped-def]
    return load_settings(engines={"hf": {"model": str(path), "device": "cpu", "max_input_tokens": 64}}, **over)


@pytest.fixture(scope="module")
def server(original_dir: Path) -> Iterator[LiveServer]:
    with live_server(_settings(original_dir)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture
def hub_online(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub refuses every request while HF_HUB_OFFLINE is set (the suite sets it): allow
    the clients' calls, which go to the loopback server only."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def v1(client: httpx.Client, texts: list[str], task: str = "text-matching", **extra: Any) -> np.ndarray:
    resp = client.post("/v1/embeddings", json={"input": texts, "task": task, **extra})
    assert resp.status_code == 200, resp.text
    return np.array([d["embedding"] for d in resp.json()["data"]], dtype=np.float32)


def assert_tei_error(resp: httpx.Response, status: int, error_type: str, fragment: str = "") -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "error_type"}, body
    assert body["error_type"] == error_type
    assert isinstance(body["error"], str) and body["error"]
    assert fragment.lower() in body["error"].lower(), body["error"]
    assert "Traceback" not in resp.text and "/work/" not in resp.text
    return str(body["error"])


# ---------------------------------------------------------------------------------------- /embed


@pytest.mark.parametrize("path", ["/embed", "/", "/invocations"])
@pytest.mark.parametrize("task", [None, *TASKS])
def test_embed_equals_v1_embeddings(client, path, task) -> None:  # type: ignore[no-untyped-def]
    body: dict[str, Any] = {"inputs": TEXTS}
    if task:
        body["prompt_name"] = task
    resp = client.post(path, json=body)
    assert resp.status_code == 200, resp.text
    got = np.array(resp.json(), dtype=np.float32)
    # no prompt_name = the default alias's task (text-matching), as /v1/embeddings without a task
    want = v1(client, TEXTS, task or "text-matching")
    assert got.shape == want.shape == (3, 64)
    assert np.array_equal(got, want)
    assert resp.headers["x-embed-engine"] == "hf" and int(resp.headers["x-compute-tokens"]) > 3


def test_single_input_is_wrapped_and_matches_the_reference(client, reference) -> None:  # type: ignore[no-untyped-def]
    got = client.post("/embed", json={"inputs": TEXTS[1], "prompt_name": "retrieval.query"}).json()
    assert isinstance(got, list) and len(got) == 1 and len(got[0]) == 64
    want = reference.encode(TEXTS[1:2], "retrieval.query")[0]
    assert cosine(got[0], want) >= 0.99999 and np.abs(np.array(got[0]) - want).max() <= 1e-4


@pytest.mark.parametrize("dimensions", [8, 24, 64])
@pytest.mark.parametrize("normalize", [True, False])
def test_dimensions_truncate_then_normalise_like_v1(client, reference, dimensions, normalize) -> None:  # type: ignore[no-untyped-def]
    body = {"inputs": TEXTS, "prompt_name": "retrieval.passage", "dimensions": dimensions, "normalize": normalize}
    got = np.array(client.post("/embed", json=body).json(), dtype=np.float32)
    want = v1(client, TEXTS, "retrieval.passage", dimensions=dimensions, normalized=normalize)
    assert got.shape == (3, dimensions) and np.array_equal(got, want)
    norms = np.linalg.norm(got, axis=1)
    assert np.allclose(norms, 1, atol=1e-5) if normalize else not np.allclose(norms, 1, atol=1e-3)
    ref = reference.encode(TEXTS, "retrieval.passage", dimensions, normalize)
    assert np.abs(got - ref).max() <= 1e-3


def test_truncation_defaults_to_auto_truncate_and_left_keeps_the_end(client, reference) -> None:  # type: ignore[no-untyped-def]
    right = client.post("/embed", json={"inputs": LONG})  # api.auto_truncate: true (TEI >= 1.9)
    assert right.status_code == 200, right.text
    assert right.headers["x-compute-tokens"] == "64"
    ids = reference.token_ids(LONG, None)
    assert len(ids) > 64
    want_right = reference.pooled_ids(ids[:63] + ids[-1:], "text-matching")
    assert cosine(right.json()[0], want_right) >= 0.99999
    for direction in ("Left", "left"):  # TEI's spelling, and huggingface_hub's
        left = client.post("/embed", json={"inputs": LONG, "truncation_direction": direction})
        assert left.status_code == 200, left.text
        want_left = reference.pooled_ids(ids[:1] + ids[-63:], "text-matching")
        assert cosine(left.json()[0], want_left) >= 0.99999
        assert cosine(left.json()[0], want_right) < 0.999
    err = assert_tei_error(client.post("/embed", json={"inputs": ["ok", LONG], "truncate": False}), 422, "Validation")
    assert err.startswith("`inputs` must have less than 64 tokens. Given: ") and "inputs[1]" in err


def test_token_ids_follow_the_gateway_policy(client, original_dir) -> None:  # type: ignore[no-untyped-def]
    assert_tei_error(client.post("/embed", json={"inputs": [5, 6, 7]}), 422, "Validation", "token-id input is disabled")
    with live_server(_settings(original_dir, api={"token_ids": "accept"})) as s, httpx.Client(base_url=s.url) as c:
        text = TEXTS[0]
        content = c.post("/tokenize", json={"inputs": text, "add_special_tokens": False}).json()[0]
        ids = [t["id"] for t in content]
        by_ids = c.post("/embed", json={"inputs": [ids, text]}).json()  # TEI allows ids and texts mixed
        assert np.array_equal(np.array(by_ids[0]), np.array(by_ids[1]))
        single = c.post("/embed", json={"inputs": ids}).json()  # one id list = one input
        assert len(single) == 1 and np.array_equal(np.array(single[0]), np.array(by_ids[1]))


# ------------------------------------------------------------------------------------ /embed_all


def test_embed_all_gives_every_token_state(client, reference) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/embed_all", json={"inputs": TEXTS[:2], "prompt_name": "retrieval.query"})
    assert resp.status_code == 200, resp.text
    states = resp.json()
    tokens = client.post("/tokenize", json={"inputs": TEXTS[:2], "prompt_name": "retrieval.query"}).json()
    assert len(states) == 2
    for text, rows, toks in zip(TEXTS, states, tokens, strict=False):
        ids = reference.token_ids(text, "retrieval.query")
        assert [t["id"] for t in toks] == ids  # special tokens and the instruction included
        got = np.array(rows, dtype=np.float32)
        assert got.shape == (len(ids), 64)
        want = reference.hidden(ids, "retrieval.query").numpy()
        assert np.abs(got - want).max() <= 1e-3
        # their mean is the un-normalised embedding
        pooled = v1(client, [text], "retrieval.query", normalized=False)[0]
        assert np.abs(got.mean(axis=0) - pooled).max() <= 1e-4
    single = client.post("/embed_all", json={"inputs": "coffee"}).json()
    assert len(single) == 1 and len(single[0]) == len(reference.token_ids("coffee", None))


def test_embed_all_needs_an_engine_that_returns_token_states() -> None:
    fake = FakeEngine("fake")  # capabilities: no token_embeddings
    with live_server(load_settings(), {"fake": fake}) as s, httpx.Client(base_url=s.url) as c:
        assert c.post("/embed", json={"inputs": "x"}).status_code == 200
        assert_tei_error(c.post("/embed_all", json={"inputs": "x"}), 422, "Validation", "token embeddings")
        assert_tei_error(c.post("/tokenize", json={"inputs": "x"}), 422, "Validation", "tokenise")
    assert len(fake.calls) == 1  # /embed_all never reached the engine


# ------------------------------------------------------------------------------ /tokenize /decode


def test_tokenize_gives_utf8_byte_offsets(client, reference) -> None:  # type: ignore[no-untyped-def]
    text = "Zürich 東京 coffee"
    for task in (None, "retrieval.query"):
        body: dict[str, Any] = {"inputs": [text], **({"prompt_name": task} if task else {})}
        toks = client.post("/tokenize", json=body).json()[0]
        assert [t["id"] for t in toks] == reference.token_ids(text, task)
        assert toks[0] == {"id": 0, "text": "<s>", "special": True, "start": None, "stop": None}
        assert toks[-1] == {"id": 2, "text": "</s>", "special": True, "start": None, "stop": None}
        prefix = "Represent the query for retrieving evidence documents: " if task else ""
        raw = (prefix + text).encode("utf-8")
        content = toks[1:-1]
        assert all(not t["special"] for t in content)
        for t in content:
            assert raw[t["start"] : t["stop"]].decode("utf-8") == t["text"]
        starts = [t["start"] for t in content]
        assert starts == sorted(starts)
        tokyo = next(t for t in content if "東" in t["text"])
        assert tokyo["start"] == len((prefix + "Zürich ").encode("utf-8"))  # bytes, not characters
        assert tokyo["start"] != len(prefix + "Zürich ")
    plain = client.post("/tokenize", json={"inputs": text, "add_special_tokens": False}).json()
    assert [t["id"] for t in plain[0]] == reference.token_ids(text, None)[1:-1]


def test_decode_round_trip(client) -> None:  # type: ignore[no-untyped-def]
    text = "coffee in the morning"
    toks = client.post("/tokenize", json={"inputs": text}).json()[0]
    ids = [t["id"] for t in toks]
    assert client.post("/decode", json={"ids": ids}).json() == [text]
    both = client.post("/decode", json={"ids": [ids, ids[1:3]], "skip_special_tokens": False}).json()
    assert both[0].startswith("<s>") and both[0].endswith("</s>") and text in both[0]
    assert len(both) == 2 and both[1] and both[1] in text
    assert_tei_error(client.post("/decode", json={"ids": [0, 10**6]}), 422, "Validation", "vocabulary")
    assert_tei_error(client.post("/decode", json={"ids": []}), 400, "Empty")
    assert_tei_error(client.post("/decode", json={"ids": [[1], []]}), 400, "Empty")
    assert_tei_error(client.post("/decode", json={"ids": [-1]}), 422, "Validation")


# ----------------------------------------------------------------------------------------- /info


def test_info_has_teis_keys_and_the_gateways(client) -> None:  # type: ignore[no-untyped-def]
    info = client.get("/info").json()
    tei_keys = {
        "model_id", "model_sha", "model_dtype", "model_type", "max_concurrent_requests", "max_input_length",
        "max_batch_tokens", "max_batch_requests", "max_client_batch_size", "auto_truncate", "tokenization_workers",
        "version",
    }
    assert tei_keys <= set(info)
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["max_input_length"] == 64 and info["max_client_batch_size"] == 2048
    assert info["max_concurrent_requests"] == 512 and info["auto_truncate"] is True
    assert info["model_dtype"] == "float32" and info["tokenization_workers"] >= 1
    assert {"engines", "routes", "limits", "dimensions"} <= set(info)  # the gateway's own keys stay


# ------------------------------------------------------------------------------------ TEI clients


def test_huggingface_hub_inference_client(server, client, hub_online) -> None:  # type: ignore[no-untyped-def]
    hub = InferenceClient(model=server.url)  # posts to the URL itself: POST /
    got = hub.feature_extraction(TEXTS)
    assert got.dtype == np.float32 and np.array_equal(got, v1(client, TEXTS))
    query = hub.feature_extraction(TEXTS[0], prompt_name="retrieval.query", dimensions=32, truncation_direction="left")
    assert np.array_equal(query, v1(client, TEXTS[:1], "retrieval.query", dimensions=32))
    raw = hub.feature_extraction(TEXTS[2], normalize=False, prompt_name="separation")
    assert np.array_equal(raw, v1(client, TEXTS[2:], "separation", normalized=False))


def test_langchain_huggingface_endpoint_embeddings(server, client, hub_online) -> None:  # type: ignore[no-untyped-def]
    from langchain_huggingface import HuggingFaceEndpointEmbeddings

    # LangChain refuses a URL as `model`; the URL goes to InferenceClient.feature_extraction(model=...)
    # through model_kwargs, with the task as TEI's prompt_name.
    passages = HuggingFaceEndpointEmbeddings(
        model="jinaai/jina-embeddings-v3",
        model_kwargs={"model": server.url, "prompt_name": "retrieval.passage"},
    )
    docs = passages.embed_documents(TEXTS)
    assert np.array_equal(np.array(docs, dtype=np.float32), v1(client, TEXTS, "retrieval.passage"))
    queries = HuggingFaceEndpointEmbeddings(
        model="jinaai/jina-embeddings-v3",
        model_kwargs={"model": server.url, "prompt_name": "retrieval.query"},
    )
    q = queries.embed_query(TEXTS[0])
    assert np.array_equal(np.array(q, dtype=np.float32), v1(client, TEXTS[:1], "retrieval.query")[0])


def test_llamaindex_text_embeddings_inference(server, client) -> None:  # type: ignore[no-untyped-def]
    from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

    emb = TextEmbeddingsInference(model_name="jina-embeddings-v3", base_url=server.url)  # POST /embed, truncate: true
    vectors = emb.get_text_embedding_batch(TEXTS)
    assert np.array_equal(np.array(vectors, dtype=np.float32), v1(client, TEXTS))
    long = emb.get_text_embedding(LONG)  # truncated, not refused
    assert len(long) == 64


# -------------------------------------------------------------------------------- errors (TEI's)


def test_validation_and_empty_errors(client) -> None:  # type: ignore[no-untyped-def]
    for body in ({"inputs": ""}, {"inputs": []}, {"inputs": ["a", ""]}, {"inputs": ["a", []]}):
        assert_tei_error(client.post("/embed", json=body), 400, "Empty", "`inputs` cannot be empty")
    assert_tei_error(client.post("/tokenize", json={"inputs": []}), 400, "Empty")
    assert_tei_error(client.post("/embed", json={"inputs": "x", "prompt_name": "query"}), 422, "Validation", "retrieval.query")
    assert_tei_error(client.post("/embed", json={"inputs": "x", "prompt_name": "none"}), 422, "Validation", "prompt")
    assert_tei_error(client.post("/embed", json={"inputs": "x", "dimensions": 0}), 422, "Validation", "dimensions")
    assert_tei_error(client.post("/embed", json={"inputs": "x", "dimensions": 65}), 422, "Validation", "dimensions")
    assert_tei_error(client.post("/embed", json={"inputs": "x", "normalize": "yes"}), 422, "Validation", "normalize")
    assert_tei_error(client.post("/embed", json={"inputs": "x", "truncation_direction": "up"}), 422, "Validation")
    assert_tei_error(client.post("/embed", json={"input": "x"}), 422, "Validation", "missing field `inputs`")
    assert_tei_error(client.post("/embed", content=b"{nope", headers={"content-type": "application/json"}),
                     422, "Validation", "not valid JSON")
    assert client.post("/embed", json={"inputs": "x", "unknown_field": 1}).status_code == 200  # TEI ignores them
    # the OpenAI/Jina routes keep their own shape
    openai_err = client.post("/v1/embeddings", json={"input": ""})
    assert openai_err.status_code == 400 and "message" in openai_err.json()["error"]


def test_limits_and_front_door_refusals_in_teis_shape(original_dir, hub_online) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(
        original_dir,
        auth={"api_keys": [KEY]},
        limits={"max_inputs_per_request": 4, "max_body_bytes": 2048},
        api={"auto_truncate": False},
    )
    auth = {"authorization": f"Bearer {KEY}"}
    with live_server(settings) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        resp = c.post("/embed", json={"inputs": "x"})
        assert_tei_error(resp, 401, "Unauthorized")
        assert resp.headers["www-authenticate"] == "Bearer"
        assert_tei_error(c.post("/", json={"inputs": "x"}), 401, "Unauthorized")
        assert c.post("/embed", json={"inputs": "x"}, headers=auth).status_code == 200
        assert_tei_error(c.post("/embed", json={"inputs": ["x"] * 5}, headers=auth), 422, "Validation", "max_inputs_per_request = 4")
        assert_tei_error(c.post("/tokenize", json={"inputs": ["x"] * 5}, headers=auth), 422, "Validation", "batch size")
        assert_tei_error(c.post("/embed", json={"inputs": ["x " * 1500]}, headers=auth), 413, "Validation", "max_body_bytes")
        # api.auto_truncate: false -> an over-long input without "truncate" is TEI's 422
        assert_tei_error(c.post("/embed", json={"inputs": LONG[:1500]}, headers=auth), 422, "Validation", "must have less than")
        assert c.post("/embed", json={"inputs": LONG[:1500], "truncate": True}, headers=auth).status_code == 200
        assert c.get("/info", headers=auth).json()["auto_truncate"] is False
        # the clients' own key options send the bearer key
        from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

        assert InferenceClient(model=s.url, token=KEY).feature_extraction("x").shape == (1, 64)
        assert len(TextEmbeddingsInference(model_name="j", base_url=s.url, auth_token=KEY).get_text_embedding("x")) == 64


@pytest.mark.parametrize(
    ("error", "status", "error_type"),
    [
        (EngineOverloadedError("queue full", retry_after=3), 429, "Overloaded"),
        (EngineUnavailableError("down", retry_after=2), 503, "Unhealthy"),
        (EngineError("broken"), 424, "Backend"),
    ],
)
def test_engine_failures_in_teis_shape(error, status, error_type) -> None:  # type: ignore[no-untyped-def]
    fake = FakeEngine("fake", tasks=frozenset([*Task, None]), fail_with=lambda job: error)
    settings = load_settings(retry={"attempts": 1})
    with live_server(settings, {"fake": fake}) as s, httpx.Client(base_url=s.url) as c:
        resp = c.post("/embed", json={"inputs": "x"})
        assert_tei_error(resp, status, error_type)
        if status in (429, 503):
            assert int(resp.headers["retry-after"]) >= 1
        openai = c.post("/v1/embeddings", json={"input": "x"})  # same failure, OpenAI's shape there
        assert openai.status_code == (500 if status == 424 else status) and "message" in openai.json()["error"]

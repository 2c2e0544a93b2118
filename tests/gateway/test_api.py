"""The real app over real HTTP with the real HF engine on the tiny checkpoint."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from gateway.config import load_settings
from tests.support.harness import cosine
from tests.support.server import LiveServer, live_server

TEXTS = ["the user likes coffee in the morning", "người dùng thích cà phê", "用户喜欢咖啡"]
TASKS = [None, "retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]


def settings_for(path: Path, **api: object):  # type: ignore[no-untyped-def]
    return load_settings(engines={"hf": {"model": str(path), "device": "cpu", "max_input_tokens": 64}}, **api)


@pytest.fixture(scope="module")
def server(original_dir: Path) -> Iterator[LiveServer]:
    # the cache off: these tests compare what the engine computes (and its timings) per request
    with live_server(settings_for(original_dir, cache={"memory_bytes": 0})) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def assert_error(resp: httpx.Response, status: int, param: str | None = None, fragment: str = "") -> dict:  # type: ignore[type-arg]
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "detail"}  # OpenAI's shape and Jina's, in one body
    err = body["error"]
    assert body["detail"] == err["message"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if param is not None:
        assert err["param"] == param
    assert fragment.lower() in err["message"].lower(), err["message"]
    assert "Traceback" not in resp.text and "/work/" not in resp.text
    return err


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("dimensions", [None, 24])
@pytest.mark.parametrize("normalized", [True, False])
def test_every_task_matches_reference_over_http(client, reference, task, dimensions, normalized) -> None:  # type: ignore[no-untyped-def]
    body: dict[str, object] = {"input": TEXTS, "normalized": normalized}
    if task is not None:
        body["task"] = task
    else:
        body["task"] = "none"
    if dimensions:
        body["dimensions"] = dimensions
    resp = client.post("/v1/embeddings", json=body)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    got = np.array([d["embedding"] for d in data["data"]], dtype=np.float32)
    want = reference.encode(TEXTS, task, dimensions, normalized)
    assert got.shape == want.shape
    for g, w in zip(got, want, strict=True):
        assert cosine(g, w) >= 0.99999
    if normalized:
        assert np.abs(got - want).max() <= 1e-4
    else:
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    assert [d["index"] for d in data["data"]] == [0, 1, 2]
    assert data["object"] == "list" and all(d["object"] == "embedding" for d in data["data"])
    tokens = sum(len(reference.token_ids(t, task)) for t in TEXTS)
    assert data["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert resp.headers["x-embed-engine"] == "hf"
    assert float(resp.headers["x-inference-time"]) > 0


def test_alias_selects_task_and_explicit_task_wins(client, reference) -> None:  # type: ignore[no-untyped-def]
    q = client.post("/v1/embeddings", json={"input": TEXTS[0], "model": "jina-embeddings-v3-query"}).json()
    assert q["model"] == "jina-embeddings-v3-query"
    assert cosine(q["data"][0]["embedding"], reference.encode(TEXTS[:1], "retrieval.query")[0]) >= 0.99999
    d = client.post("/v1/embeddings", json={"input": TEXTS[0]}).json()  # default alias: text-matching
    assert d["model"] == "jina-embeddings-v3"
    assert cosine(d["data"][0]["embedding"], reference.encode(TEXTS[:1], "text-matching")[0]) >= 0.99999
    w = client.post(
        "/v1/embeddings", json={"input": TEXTS[0], "model": "jina-embeddings-v3-query", "task": "separation"}
    ).json()
    assert cosine(w["data"][0]["embedding"], reference.encode(TEXTS[:1], "separation")[0]) >= 0.99999


def test_openai_sdk_default_base64_and_float(server, reference) -> None:  # type: ignore[no-untyped-def]
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    res = sdk.embeddings.create(model="jina-embeddings-v3", input=TEXTS)  # SDK default: base64
    want = reference.encode(TEXTS, "text-matching")
    for item, w in zip(res.data, want, strict=True):
        assert len(item.embedding) == 64
        assert np.abs(np.array(item.embedding) - w).max() <= 1e-4
    res = sdk.embeddings.create(
        model="jina-embeddings-v3-passage", input=TEXTS[1], dimensions=32, encoding_format="float"
    )
    assert len(res.data[0].embedding) == 32
    assert res.usage.total_tokens == len(reference.token_ids(TEXTS[1], "retrieval.passage"))
    extra = sdk.embeddings.create(model="jina-embeddings-v3", input=TEXTS[2], extra_body={"task": "classification"})
    assert cosine(extra.data[0].embedding, reference.encode(TEXTS[2:], "classification")[0]) >= 0.99999
    with pytest.raises(openai.NotFoundError):
        sdk.embeddings.create(model="text-embedding-3-small", input="x")


def test_base64_wire_format(client, reference) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/embeddings", json={"input": TEXTS[0], "encoding_format": "base64"}).json()
    vec = np.frombuffer(base64.b64decode(resp["data"][0]["embedding"]), dtype="<f4")
    assert np.abs(vec - reference.encode(TEXTS[:1], "text-matching")[0]).max() <= 1e-4


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"input": ""}, "input", "empty string"),
        ({"input": []}, "input", "empty list"),
        ({"input": ["ok", ""]}, "input", "input[1] is an empty string"),
        ({"input": 5}, "input", "must be a string"),
        ({"input": None}, "input", "must be a string"),
        ({"input": {"a": 1}}, "input", "must be a string"),
        ({"input": [1.5, 2]}, "input", "input must be"),
        ({"input": ["a", 1]}, "input", "input must be"),
        ({"input": [[]]}, "input", "empty token list"),
        ({"input": [[1, "a"]]}, "input", "integer token ids"),
        ({"input": [True, False]}, "input", "input must be"),
        ({}, "input", "missing"),
        ({"input": "x", "task": "retrieval"}, "task", "unknown task"),
        ({"input": "x", "task": 3}, "task", ""),
        ({"input": "x", "dimensions": 0}, "dimensions", ""),
        ({"input": "x", "dimensions": 1025}, "dimensions", ""),
        ({"input": "x", "dimensions": "64"}, "dimensions", ""),
        ({"input": "x", "dimensions": 128}, "dimensions", "between 1 and 64"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format", ""),
        ({"input": "x", "normalized": "yes"}, "normalized", ""),
        ({"input": "x", "bogus": 1}, "bogus", "unrecognized"),
        ({"input": "x", "model": 7}, "model", ""),
        ({"input": [1, 2, 3]}, "input", "token-id input is disabled"),
        ({"input": [[1, 2], [3]]}, "input", "token-id input is disabled"),
        ({"input": ["x"] * 2049}, "input", "2049 items"),
    ],
)
def test_bad_input_is_a_clear_400(client, body, param, fragment) -> None:  # type: ignore[no-untyped-def]
    assert_error(client.post("/v1/embeddings", json=body), 400, param, fragment)


def test_malformed_bodies_are_400(client) -> None:  # type: ignore[no-untyped-def]
    for raw in (b"{bad", b"", b"[1,2]", b'"text"', b"\xff\xfe"):
        assert_error(client.post("/v1/embeddings", content=raw, headers={"content-type": "application/json"}), 400)


def test_over_long_input_400_names_index_and_count_unless_truncate(client, reference) -> None:  # type: ignore[no-untyped-def]
    long = "memory project deadline friday " * 40
    err = assert_error(client.post("/v1/embeddings", json={"input": ["ok", long]}), 400, "input[1]", "input[1] has")
    assert err["code"] == "input_too_long"
    n = len(reference.tokenizer(long)["input_ids"])
    assert str(n) in err["message"] and "64" in err["message"]
    ok = client.post("/v1/embeddings", json={"input": ["ok", long], "truncate": True})
    assert ok.status_code == 200
    want = reference.pooled_ids(reference.token_ids(long, "text-matching", max_length=64), "text-matching")
    assert cosine(ok.json()["data"][1]["embedding"], want) >= 0.99999


def test_unknown_model_is_404_in_openai_shape(client) -> None:  # type: ignore[no-untyped-def]
    err = assert_error(client.post("/v1/embeddings", json={"input": "x", "model": "gpt-4"}), 404, "model")
    assert err["code"] == "model_not_found"
    assert_error(client.get("/v1/models/gpt-4"), 404, "model")


def test_wrong_route_and_method_in_openai_shape(client) -> None:  # type: ignore[no-untyped-def]
    assert_error(client.get("/v1/nothing"), 404)
    assert_error(client.get("/v1/embeddings"), 405)


def test_models_health_ready(client) -> None:  # type: ignore[no-untyped-def]
    models = client.get("/v1/models").json()
    ids = {m["id"]: m for m in models["data"]}
    assert ids["jina-embeddings-v3"]["task"] == "text-matching"
    assert ids["jina-embeddings-v3-base"]["task"] is None
    assert client.get("/v1/models/jina-embeddings-v3-query").json()["task"] == "retrieval.query"
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["engines"]["hf"]["ready"] is True


def test_request_id_is_echoed(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/embeddings", json={"input": "x"}, headers={"x-request-id": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"


def test_token_ids_accepted_when_configured(original_dir, reference) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(original_dir, api={"token_ids": "accept"})
    ids = reference.tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"]
    with live_server(settings) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        one = c.post("/v1/embeddings", json={"input": ids, "task": "separation"}).json()
        many = c.post("/v1/embeddings", json={"input": [ids, ids[:3]], "task": "separation"}).json()
        bad = c.post("/v1/embeddings", json={"input": [1, 10**9]})
    want = reference.encode(TEXTS[:1], "separation")[0]
    assert cosine(one["data"][0]["embedding"], want) >= 0.99999
    assert cosine(many["data"][0]["embedding"], want) >= 0.99999 and len(many["data"]) == 2
    assert_error(bad, 400, "input[0]", "outside this model's vocabulary")

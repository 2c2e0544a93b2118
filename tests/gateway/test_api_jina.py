"""Jina's request schema, binary embeddings, late chunking and /v1/chunk-embeddings over real HTTP,
with the real HF engine on the tiny checkpoint, against the independent fp32 reference."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.config import load_settings
from gateway.contract import ChunkingRule, Task
from gateway.serving.postprocess import finalize
from tests.gateway.test_api import assert_error
from tests.support import late_reference as lr
from tests.support.fakes import FakeEngine
from tests.support.harness import cosine
from tests.support.server import LiveServer, live_server

TEXTS = ["the user likes coffee in the morning", "người dùng thích cà phê", "用户喜欢咖啡"]
CHUNKS = ["the user likes coffee.", "they work at a company in paris.", "deadline friday"]
MAX_INPUT = 64  # so late chunking of a longer document runs in windows of 64 tokens, overlap 64 // 16
WINDOW, OVERLAP = MAX_INPUT, MAX_INPUT // 16
CAP = 400


@pytest.fixture(scope="module")
def server(original_dir: Path) -> Iterator[LiveServer]:
    settings = load_settings(
        engines={"hf": {"model": str(original_dir), "device": "cpu", "max_input_tokens": MAX_INPUT,
                        "max_late_chunking_tokens": CAP}}
    )
    with live_server(settings) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def post(client: httpx.Client, body: dict, path: str = "/v1/embeddings") -> dict:  # type: ignore[type-arg]
    resp = client.post(path, json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    for g, w in zip(got, want, strict=True):
        assert cosine(g, w) >= 0.99999


# ------------------------------------------------------------------ the Jina request schema


def test_jina_request_shape_equals_reference(client, reference) -> None:  # type: ignore[no-untyped-def]
    body = {
        "model": "jina-embeddings-v3",
        "input": [{"text": TEXTS[0]}, TEXTS[1], {"text": TEXTS[2]}],
        "task": "retrieval.passage",
        "dimensions": 32,
        "late_chunking": False,
        "embedding_type": "float",
        "normalized": True,
        "truncate": False,
    }
    data = post(client, body)
    got = np.array([d["embedding"] for d in data["data"]], dtype=np.float32)
    close(got, reference.encode(TEXTS, "retrieval.passage", 32))
    tokens = sum(len(reference.token_ids(t, "retrieval.passage")) for t in TEXTS)
    assert data["usage"] == {"total_tokens": tokens, "prompt_tokens": tokens}
    assert [d["index"] for d in data["data"]] == [0, 1, 2] and data["model"] == "jina-embeddings-v3"
    one = post(client, {"input": {"text": TEXTS[2]}, "task": "separation"})
    close(np.array([one["data"][0]["embedding"]]), reference.encode(TEXTS[2:], "separation"))


@pytest.mark.parametrize("dims", [None, 12, 64])
def test_binary_and_base64_embedding_types(client, reference, dims) -> None:  # type: ignore[no-untyped-def]
    common: dict[str, object] = {"input": TEXTS, "task": "text-matching"}
    if dims:
        common["dimensions"] = dims
    floats = np.array([d["embedding"] for d in post(client, {**common, "embedding_type": "float"})["data"]], dtype=np.float32)
    want = reference.encode(TEXTS, "text-matching", dims)
    close(floats, want)
    b64 = post(client, {**common, "embedding_type": "base64"})["data"]
    assert np.array_equal(np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in b64]), floats)
    ub = post(client, {**common, "embedding_type": "ubinary"})["data"]
    packed = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), np.uint8) for d in ub])
    d = floats.shape[1]
    assert packed.shape == (3, -(-d // 8))
    assert np.array_equal(packed, np.packbits(floats > 0, axis=1))
    clear = np.abs(want) > 1e-4  # signs the reference agrees on beyond float noise
    bits = np.unpackbits(packed, axis=1)[:, :d].astype(bool)
    assert np.array_equal(bits[clear], (want > 0)[clear])
    b = post(client, {**common, "embedding_type": "binary"})["data"]
    signed = np.stack([np.frombuffer(base64.b64decode(x["embedding"]), np.int8) for x in b])
    assert np.array_equal(signed.astype(np.int16) + 128, packed.astype(np.int16))


def test_a_list_of_types_gives_an_object_per_embedding(client) -> None:  # type: ignore[no-untyped-def]
    data = post(client, {"input": TEXTS[:2], "embedding_type": ["float", "ubinary", "binary", "base64"], "dimensions": 16})
    for item in data["data"]:
        e = item["embedding"]
        assert sorted(e) == ["base64", "binary", "float", "ubinary"]
        f = np.array(e["float"], dtype=np.float32)
        assert len(f) == 16
        assert np.array_equal(np.frombuffer(base64.b64decode(e["base64"]), "<f4"), f)
        assert np.frombuffer(base64.b64decode(e["ubinary"]), np.uint8).tolist() == np.packbits(f > 0).tolist()
        assert (np.frombuffer(base64.b64decode(e["binary"]), np.int8).astype(int) + 128).tolist() == np.packbits(f > 0).tolist()
    single = post(client, {"input": TEXTS[0], "embedding_type": ["ubinary"]})["data"][0]["embedding"]
    assert list(single) == ["ubinary"]  # a list always means objects, even of one type


def test_jina_clients_older_encoding_type_field(client, reference) -> None:  # type: ignore[no-untyped-def]
    """LangChain's JinaEmbeddings and LlamaIndex's JinaEmbedding send ``encoding_type`` (and always
    ``late_chunking``), and decode binary types from lists of byte values."""
    langchain_body = {"input": TEXTS, "model": "jina-embeddings-v3", "encoding_type": "float", "late_chunking": False,
                      "task": "retrieval.query", "dimensions": 64}
    data = post(client, langchain_body)
    close(np.array([d["embedding"] for d in sorted(data["data"], key=lambda e: e["index"])]),
          reference.encode(TEXTS, "retrieval.query", 64))
    floats = np.array([d["embedding"] for d in data["data"]], dtype=np.float32)
    ub = post(client, {**langchain_body, "encoding_type": "ubinary"})["data"]
    # the clients' own decoding:
    bits = [np.unpackbits(np.array(r["embedding"], dtype="uint8")).tolist() for r in ub]
    assert bits == (floats > 0).astype(int).tolist()
    b = post(client, {**langchain_body, "encoding_type": "binary"})["data"]
    bits = [np.unpackbits((np.array(r["embedding"]) + 128).astype("uint8")).tolist() for r in b]
    assert bits == (floats > 0).astype(int).tolist()


# ------------------------------------------------------------------ late chunking


@pytest.mark.parametrize("task", ["retrieval.passage", "text-matching"])
def test_late_chunking_over_http(client, reference, task) -> None:  # type: ignore[no-untyped-def]
    data = post(client, {"input": CHUNKS, "task": task, "late_chunking": True, "dimensions": 48})
    got = np.array([d["embedding"] for d in data["data"]], dtype=np.float32)
    n = len(lr.document_ids(reference, CHUNKS, task))
    assert n <= WINDOW  # one pass
    close(got, finalize(lr.late_chunk(reference, CHUNKS, task), 48, True))
    assert data["usage"] == {"total_tokens": n, "prompt_tokens": n}
    alone = post(client, {"input": CHUNKS, "task": task, "dimensions": 48})
    assert all(cosine(a["embedding"], b["embedding"]) < 0.999 for a, b in zip(data["data"], alone["data"]))


def test_long_late_chunking_over_http_runs_in_windows(client, reference) -> None:  # type: ignore[no-untyped-def]
    chunks = [f"memory project deadline friday weekend travel paris {w}." for w in ("one", "two", "three", "four", "five")] * 3
    n = len(lr.document_ids(reference, chunks, "retrieval.passage"))
    assert 2 * WINDOW < n <= CAP
    data = post(client, {"input": [{"text": c} for c in chunks], "task": "retrieval.passage", "late_chunking": True,
                         "embedding_type": ["float", "ubinary"]})
    got = np.array([d["embedding"]["float"] for d in data["data"]], dtype=np.float32)
    close(got, finalize(lr.late_chunk(reference, chunks, "retrieval.passage", WINDOW, OVERLAP), None, True))
    assert data["usage"]["total_tokens"] == n


# ------------------------------------------------------------------ /v1/chunk-embeddings

DOC = "Berlin is the capital of Germany. It has about four million people!\n\n用户喜欢咖啡。他住在城市。 Người dùng thích cà phê."


@pytest.mark.parametrize(
    ("chunking", "rule"),
    [
        (None, ChunkingRule("sentences")),
        ({"type": "sentences", "size": 2}, ChunkingRule("sentences", 2)),
        ({"type": "tokens", "size": 8, "overlap": 3}, ChunkingRule("tokens", 8, 3)),
    ],
)
def test_chunk_embeddings_endpoint(client, reference, chunking, rule) -> None:  # type: ignore[no-untyped-def]
    body: dict[str, object] = {"input": DOC, "task": "retrieval.passage"}
    if chunking:
        body["chunking"] = chunking
    data = post(client, body, "/v1/chunk-embeddings")
    ranges, want = lr.rule_reference(reference, DOC, "retrieval.passage", rule, WINDOW, OVERLAP)
    assert [(c["start"], c["end"]) for c in data["data"]] == ranges
    assert all(c["text"] == DOC[c["start"] : c["end"]] and c["object"] == "chunk" for c in data["data"])
    assert [c["index"] for c in data["data"]] == list(range(len(ranges)))
    close(np.array([c["embedding"] for c in data["data"]], dtype=np.float32), finalize(want, None, True))
    n = len(lr.document_ids(reference, [DOC], "retrieval.passage"))
    assert data["usage"] == {"total_tokens": n, "prompt_tokens": n}
    if rule.kind == "sentences" and rule.size == 1:
        assert [c["text"] for c in data["data"]] == [
            "Berlin is the capital of Germany.", "It has about four million people!", "用户喜欢咖啡。", "他住在城市。",
            "Người dùng thích cà phê.",
        ]


def test_chunk_embeddings_types_and_dimensions(client) -> None:  # type: ignore[no-untyped-def]
    data = post(client, {"input": {"text": DOC}, "dimensions": 16, "embedding_type": ["float", "binary"]}, "/v1/chunk-embeddings")
    for c in data["data"]:
        f = np.array(c["embedding"]["float"], dtype=np.float32)
        assert len(f) == 16 and abs(np.linalg.norm(f) - 1) < 1e-5
        assert (np.frombuffer(base64.b64decode(c["embedding"]["binary"]), np.int8).astype(int) + 128).tolist() == np.packbits(f > 0).tolist()


# ------------------------------------------------------------------ bad combinations


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"input": "x", "encoding_format": "float", "embedding_type": "binary"}, "embedding_type", "send only one"),
        ({"input": "x", "encoding_format": "base64", "encoding_type": "float"}, "encoding_type", "send only one"),
        ({"input": "x", "embedding_type": "float", "encoding_type": "float"}, "encoding_type", "only embedding_type"),
        ({"input": "x", "embedding_type": "int8"}, "embedding_type", "valid types"),
        ({"input": "x", "embedding_type": []}, "embedding_type", "empty list"),
        ({"input": "x", "embedding_type": ["float", "float"]}, "embedding_type", "twice"),
        ({"input": "x", "embedding_type": ["float", 3]}, "embedding_type", "not supported"),
        ({"input": "x", "encoding_type": "uint8"}, "encoding_type", "valid types"),
        ({"input": [[1, 2, 3]], "late_chunking": True}, "input", "token ids"),
        ({"input": [5, 6], "late_chunking": True}, "input", "token ids"),
        ({"input": ["ok", "   "], "late_chunking": True}, "input[1]", "no token"),
        ({"input": [], "late_chunking": True}, "input", "empty list"),
        ({"input": ["a", ""], "late_chunking": True}, "input", "input[1] is an empty string"),
        ({"input": "x", "late_chunking": "yes"}, "late_chunking", ""),
        ({"input": [{"image": "https://example.com/a.png"}]}, "input", "embeds text only"),
        ({"input": [{"text": "a", "extra": 1}]}, "input", "text only"),
        ({"input": {"text": 5}}, "input", "input.text must be a string"),
        ({"input": [{"text": ""}]}, "input", "input[0] is an empty string"),
        ({"input": ["memory project deadline friday weekend travel paris coffee"] * 60, "late_chunking": True},
         "input", "limit of 400"),
        ({"input": "x", "dimensions": 2000, "late_chunking": True}, "dimensions", ""),
        ({"input": "x", "task": "retrieval", "late_chunking": True}, "task", "unknown task"),
    ],
)
def test_bad_combinations_are_clear_400s(client, body, param, fragment) -> None:  # type: ignore[no-untyped-def]
    assert_error(client.post("/v1/embeddings", json=body), 400, param, fragment)


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"input": ""}, "input", "must contain text"),
        ({"input": "  \n "}, "input", "must contain text"),
        ({"input": ["a", "b"]}, "input", "one text"),
        ({"input": "x", "chunking": {"type": "tokens", "size": 4, "overlap": 4}}, "chunking.overlap", "smaller"),
        ({"input": "x", "chunking": {"type": "tokens", "size": 0}}, "chunking.tokens.size", ""),
        ({"input": "x", "chunking": {"type": "tokens"}}, "chunking.tokens.size", "missing"),
        ({"input": "x", "chunking": {"type": "paragraphs"}}, "chunking", ""),
        ({"input": "x", "chunking": {"type": "sentences", "overlap": 1}}, "chunking.sentences.overlap", "unrecognized"),
        ({"input": "x", "truncate": True}, "truncate", "unrecognized"),
        ({"input": "x", "embedding_type": "int4"}, "embedding_type", "valid types"),
        ({"input": "x", "task": "nope"}, "task", "unknown task"),
        ({"input": "memory project deadline friday weekend travel paris coffee. " * 60}, "input", "limit of 400"),
    ],
)
def test_chunk_endpoint_bad_input_is_400(client, body, param, fragment) -> None:  # type: ignore[no-untyped-def]
    assert_error(client.post("/v1/chunk-embeddings", json=body), 400, param, fragment)


def test_openai_requests_unchanged_and_strict(client) -> None:  # type: ignore[no-untyped-def]
    data = post(client, {"input": TEXTS[0], "encoding_format": "base64"})
    assert isinstance(data["data"][0]["embedding"], str)
    assert_error(client.post("/v1/embeddings", json={"input": "x", "embeddingtype": "binary"}), 400, "embeddingtype", "unrecognized")


# ------------------------------------------------------------------ routing


def test_late_chunking_is_routed_to_capable_engines_only(original_dir) -> None:  # type: ignore[no-untyped-def]
    """A fast engine listed first for text-matching cannot late-chunk: late-chunking requests skip it."""
    plain = FakeEngine("fast", tasks=frozenset([Task.TEXT_MATCHING]), dimensions=64)
    capable = FakeEngine("contextual", dimensions=64, late_chunking=True)
    settings = load_settings()
    with live_server(settings, {"fast": plain, "contextual": capable}) as s, httpx.Client(base_url=s.url, timeout=30) as c:
        r = c.post("/v1/embeddings", json={"input": ["a", "b"], "task": "text-matching"})
        assert r.headers["x-embed-engine"] == "fast"
        r = c.post("/v1/embeddings", json={"input": ["a", "b"], "task": "text-matching", "late_chunking": True})
        assert r.status_code == 200 and r.headers["x-embed-engine"] == "contextual"
        assert capable.calls[-1].late_chunking and not plain.calls[-1].late_chunking
    with live_server(settings, {"fast": plain}) as s, httpx.Client(base_url=s.url, timeout=30) as c:
        err = assert_error(c.post("/v1/embeddings", json={"input": "a", "late_chunking": True}), 400, "task", "late chunking")
        assert err["code"] == "unsupported_task"
        err = assert_error(c.post("/v1/chunk-embeddings", json={"input": "a. b."}), 400, "task", "late chunking")

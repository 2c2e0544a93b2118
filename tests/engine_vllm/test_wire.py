"""vLLM request bodies and strict response parsing (pure)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from engine_vllm.wire import (
    MalformedResponse,
    embeddings_body,
    fit_to_limit,
    parse_embeddings,
    parse_models,
    parse_tokens,
    pooling_body,
)


def b64(v: list[float]) -> str:
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()


def test_body_asks_for_raw_full_little_endian_vectors() -> None:
    body = embeddings_body("m", ["a", "b"])
    assert body["use_activation"] is False  # no server-side normalisation: the gateway does it
    assert "dimensions" not in body  # full dimension: the gateway truncates
    assert body["encoding_format"] == "base64" and body["endianness"] == "little" and body["embed_dtype"] == "float32"
    assert embeddings_body("m", [(0, 5, 2)])["input"] == [[0, 5, 2]]


def test_pooling_body_is_the_embeddings_request_with_task_embed() -> None:
    body = pooling_body("m", [(0, 5, 2), [0, 2]])
    assert body == {**embeddings_body("m", [[0, 5, 2], [0, 2]]), "task": "embed"}
    assert body["input"] == [[0, 5, 2], [0, 2]] and body["use_activation"] is False


def test_parses_base64_and_float_items_in_index_order() -> None:
    payload = {"data": [{"index": 1, "embedding": [3.0, 4.0]}, {"index": 0, "embedding": b64([1.0, 2.0])}]}
    np.testing.assert_array_equal(parse_embeddings(payload, 2), np.array([[1, 2], [3, 4]], dtype=np.float32))
    pooled = {"data": [{"index": 1, "object": "pooling", "data": b64([3.0, 4.0])}, {"index": 0, "data": [1.0, 2.0]}]}
    np.testing.assert_array_equal(parse_embeddings(pooled, 2, "data"), np.array([[1, 2], [3, 4]], dtype=np.float32))
    with pytest.raises(MalformedResponse, match="data is neither base64"):
        parse_embeddings(payload, 2, "data")  # rows under the other route's field are not taken


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ("<html>502</html>", "expected a JSON object"),
        ({"data": []}, "expected 2 items"),
        ({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}, "repeated index"),
        ({"data": [{"index": 0, "embedding": [1.0]}, {"index": 5, "embedding": [1.0]}]}, "bad or repeated index"),
        ({"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 2.0]}]}, "different lengths"),
        ({"data": [{"index": 0, "embedding": "!!"}, {"index": 1, "embedding": "!!"}]}, "not valid base64"),
        ({"data": [{"index": 0, "embedding": "AAA="}, {"index": 1, "embedding": "AAA="}]}, "not a float32 vector"),
        ({"data": [{"index": 0, "embedding": ["x"]}, {"index": 1, "embedding": [1.0]}]}, "neither base64"),
        ({"data": [{"index": 0, "embedding": b64([float("nan")])}, {"index": 1, "embedding": [1.0]}]}, "non-finite"),
    ],
)
def test_malformed_embeddings_are_refused(payload: object, fragment: str) -> None:
    with pytest.raises(MalformedResponse, match=fragment):
        parse_embeddings(payload, 2)


def test_tokens_and_models() -> None:
    assert parse_tokens({"count": 3, "tokens": [0, 7, 2]}) == [0, 7, 2]
    for bad in ({"tokens": []}, {"tokens": [0, "a"]}, {"tokens": [True]}, []):
        with pytest.raises(MalformedResponse):
            parse_tokens(bad)
    models = parse_models({"data": [{"id": "jina", "max_model_len": 8194}, {"id": "other"}]})
    assert [(m.id, m.max_model_len) for m in models] == [("jina", 8194), ("other", None)]
    with pytest.raises(MalformedResponse):
        parse_models({"data": [{"name": "x"}]})


def test_fit_to_limit_matches_the_reference_truncation() -> None:
    ids = [0, 11, 12, 13, 14, 2]
    assert fit_to_limit(ids, 6, truncate=False) == (ids, False)
    assert fit_to_limit(ids, 4, truncate=False) == (ids, True)
    assert fit_to_limit(ids, 4, truncate=True) == ([0, 11, 12, 2], True)  # first limit-1 tokens, then </s>
    assert fit_to_limit(ids, 4, truncate=True, left=True) == ([0, 13, 14, 2], True)  # <s>, then the last limit-1

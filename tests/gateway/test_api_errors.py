"""Error bodies in both shapes (OpenAI's ``error`` object and Jina's ``detail``) for every status
the gateway answers, rejected values named in 400s, and the ``/v1`` routes without the prefix;
the real app over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.api.errors import ERROR_TABLE
from gateway.config import load_settings
from gateway.contract import EmbedGatewayError, EmbedJob
from tests.support.fakes import FakeEngine
from tests.support.server import LiveServer, live_server

KEY = "sk-errors-0123456789"
AUTH = {"authorization": f"Bearer {KEY}"}


class ScriptedEngine(FakeEngine):
    """Raises the error class named by the request's first input (``raise:ClassName``)."""

    def __init__(self) -> None:
        classes = {cls.__name__: cls for cls in ERROR_TABLE}
        super().__init__("fake", fail_with=lambda job: self._scripted(job, classes))

    @staticmethod
    def _scripted(job: EmbedJob, classes: dict[str, type[EmbedGatewayError]]) -> EmbedGatewayError | None:
        first = job.inputs[0]
        if isinstance(first, str) and first.startswith("raise:"):
            name = first.removeprefix("raise:")
            return classes[name](f"scripted {name}")
        return None


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    settings = load_settings(
        auth={"api_keys": [KEY]},
        limits={"max_body_bytes": 2048},
        retry={"attempts": 1},
        breaker={"failure_threshold": 10_000},
    )
    with live_server(settings, {"fake": ScriptedEngine()}) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:
        yield c


def both_shapes(r: httpx.Response, status: int) -> dict:  # type: ignore[type-arg]
    """The body reads the same to an OpenAI client and to a Jina client."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["detail"], str) and body["detail"] and body["detail"] == body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("cls", list(ERROR_TABLE), ids=lambda c: c.__name__)
def test_every_status_of_the_table_has_both_shapes(client: httpx.Client, cls: type[EmbedGatewayError]) -> None:
    status, type_ = ERROR_TABLE[cls]
    err = both_shapes(client.post("/v1/embeddings", json={"input": f"raise:{cls.__name__}"}), status)
    assert err["type"] == type_
    assert f"scripted {cls.__name__}" in err["message"]


def test_front_door_refusals_have_both_shapes(server: LiveServer, client: httpx.Client) -> None:
    err = both_shapes(httpx.post(server.url + "/v1/embeddings", json={"input": "x"}), 401)
    assert err["type"] == "authentication_error"
    err = both_shapes(client.post("/v1/embeddings", json={"input": ["a" * 100] * 30}), 413)
    assert "limits.max_body_bytes = 2048" in err["message"]
    server.app.state.gate.draining = True  # what SIGTERM's first step does
    try:
        err = both_shapes(client.post("/embeddings", json={"input": "x"}), 503)
    finally:
        server.app.state.gate.draining = False
    assert err["code"] == "shutting_down"
    # the front door's 429 (limits.max_concurrent_requests) is checked in test_limits.py


def test_framework_errors_have_both_shapes(client: httpx.Client) -> None:
    assert both_shapes(client.get("/v1/nowhere"), 404)["type"] == "not_found_error"
    assert both_shapes(client.get("/v1/embeddings"), 405)["type"] == "invalid_request_error"
    assert both_shapes(client.post("/v1/embeddings", content=b"{bad"), 400)["message"]


@pytest.mark.parametrize(
    ("body", "param", "shown"),
    [
        ({"encoding_format": "bad_encoding_format"}, "encoding_format", "'bad_encoding_format'"),
        ({"dimensions": 5000}, "dimensions", "5000"),
        ({"dimensions": 0}, "dimensions", "got 0"),
        ({"dimensions": "32"}, "dimensions", "'32'"),
        ({"normalized": "yes"}, "normalized", "'yes'"),
        ({"truncate": "no"}, "truncate", "'no'"),
        ({"model": 7}, "model", "got 7"),
        ({"task": "retrieval"}, "task", "'retrieval'"),
        ({"embedding_type": "int4"}, "embedding_type", "'int4'"),
        ({"embedding_type": ["float", "int4"]}, "embedding_type", "'int4'"),
        ({"encoding_type": "int4"}, "encoding_type", "'int4'"),
        ({"input": 5}, "input", "got 5"),
        ({"input": [1.5, 2]}, "input", "input[0] is 1.5"),
        ({"input": ["a", 3]}, "input", "input[1] is 3"),
        ({"input": [True]}, "input", "input[0] is true"),
        ({"input": [[1, 2], [3, "x"]]}, "input", "input[1][1] is 'x'"),
        ({"input": [{"text": 3}]}, "input", "input[0].text must be a string; got 3"),
    ],
)
def test_a_rejected_value_is_named(client: httpx.Client, body: dict, param: str, shown: str) -> None:  # type: ignore[type-arg]
    err = both_shapes(client.post("/v1/embeddings", json={"input": "x", **body}), 400)
    assert err["param"] == param and err["type"] == "invalid_request_error"
    assert shown in err["message"], err["message"]


def test_a_long_rejected_value_is_shortened(client: httpx.Client) -> None:
    err = both_shapes(client.post("/v1/embeddings", json={"input": "x", "encoding_format": "z" * 1500}), 400)
    assert "'zzzz" in err["message"] and len(err["message"]) < 200


def test_chunking_rule_values_are_named(client: httpx.Client) -> None:
    err = both_shapes(client.post("/v1/chunk-embeddings", json={"input": "a. b.", "chunking": {"type": "words"}}), 400)
    assert "'words'" in err["message"]
    err = both_shapes(
        client.post("/v1/chunk-embeddings", json={"input": "a. b.", "chunking": {"type": "tokens", "size": 1.5}}), 400
    )
    assert "got 1.5" in err["message"]


def test_v1_routes_answer_without_the_prefix(client: httpx.Client) -> None:
    assert client.get("/models").json() == client.get("/v1/models").json()
    assert client.get("/models/jina-embeddings-v3-query").json() == client.get("/v1/models/jina-embeddings-v3-query").json()
    assert client.get("/models/jina-embeddings-v3-query").json()["task"] == "retrieval.query"
    err = both_shapes(client.get("/models/gpt-4"), 404)
    assert err["code"] == "model_not_found" and err["param"] == "model"
    body = {"input": ["a", "b"], "dimensions": 16}
    assert client.post("/embeddings", json=body).json()["data"] == client.post("/v1/embeddings", json=body).json()["data"]
    # the unprefixed routes sit behind the same keys
    assert both_shapes(httpx.get(str(client.base_url) + "/models"), 401)["type"] == "authentication_error"


def test_openapi_documents_both_shapes_once_per_operation(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    error = schema["components"]["schemas"]["ErrorResponse"]
    assert set(error["required"]) == {"error", "detail"}
    assert "/v1/models" in schema["paths"] and "/models" not in schema["paths"]
    assert "/embeddings" not in schema["paths"] and "/models/{model}" not in schema["paths"]
    for status in ("400", "401", "404", "500"):
        ref = schema["paths"]["/v1/models/{model}"]["get"]["responses"][status]["content"]["application/json"]
        assert ref["schema"]["$ref"].endswith("/ErrorResponse")

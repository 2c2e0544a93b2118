"""``JsonBodyRoute`` answers every body exactly as FastAPI's own route does: the same endpoint and
the gateway's error handlers behind both route classes, the same requests, the same answers (status
and body), for good bodies and for each way a body can be bad; and the OpenAPI schema is the same."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from gateway.api.body import JsonBodyRoute, is_json
from gateway.api.errors import install_error_handlers
from gateway.api.openai.protocol import EmbeddingRequest


def _app(route_class: type[APIRoute]) -> FastAPI:
    router = APIRouter(route_class=route_class)

    @router.post("/v1/embeddings")
    async def create(body: EmbeddingRequest, request: Request) -> Response:
        spec = body.to_spec()
        return Response(repr((spec.model, spec.inputs, spec.task, spec.dimensions, spec.normalized)).encode())

    @router.get("/v1/models")
    async def models() -> dict[str, Any]:  # no body: FastAPI's own handler
        return {"data": []}

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    return app


LEAN, STOCK = TestClient(_app(JsonBodyRoute)), TestClient(_app(APIRoute))

JSON = {"content-type": "application/json"}
CASES: list[tuple[str, bytes, dict[str, str]]] = [
    ("good", b'{"model": "m", "input": ["a", "b"]}', JSON),
    ("good, one string, task and dimensions", b'{"model": "m", "input": "a", "task": "retrieval.query", "dimensions": 64}', JSON),
    ("good, +json media type with charset", b'{"model": "m", "input": ["a"]}', {"content-type": "application/vnd.api+json; charset=utf-8"}),
    ("empty body", b"", JSON),
    ("not JSON", b"{not json", JSON),
    ("truncated JSON", b'{"model": "m", "input": ["a"', JSON),
    ("a JSON array", b'["a"]', JSON),
    ("a JSON string", b'"a"', JSON),
    ("a JSON number", b'3', JSON),
    ("no content-type", b'{"model": "m", "input": ["a"]}', {}),
    ("text/plain", b'{"model": "m", "input": ["a"]}', {"content-type": "text/plain"}),
    ("missing input", b'{"model": "m"}', JSON),
    ("unknown field", b'{"model": "m", "input": ["a"], "bogus": 1}', JSON),
    ("wrong input type", b'{"model": "m", "input": 3.5}', JSON),
    ("empty input list", b'{"model": "m", "input": []}', JSON),
    ("bad dimensions", b'{"model": "m", "input": ["a"], "dimensions": -1}', JSON),
    ("good, a task the route leaves to the service", b'{"model": "m", "input": ["a"], "task": "nope"}', JSON),
    ("bad encoding", b'{"model": "m", "input": ["a"], "encoding_format": "hex"}', JSON),
    ("null input", b'{"model": "m", "input": null}', JSON),
]


@pytest.mark.parametrize(("name", "body", "headers"), CASES, ids=[c[0] for c in CASES])
def test_the_same_answer_as_fastapis_own_route(name: str, body: bytes, headers: dict[str, str]) -> None:
    lean = LEAN.post("/v1/embeddings", content=body, headers=headers)
    stock = STOCK.post("/v1/embeddings", content=body, headers=headers)
    assert (lean.status_code, lean.content) == (stock.status_code, stock.content), name
    assert lean.status_code == (200 if name.startswith("good") else 400)


def test_a_route_without_a_body_is_fastapis_own() -> None:
    assert LEAN.get("/v1/models").json() == {"data": []}


def test_the_openapi_schema_is_the_same() -> None:
    assert LEAN.get("/openapi.json").json() == STOCK.get("/openapi.json").json()


def test_json_media_types() -> None:
    assert is_json("application/json") and is_json("Application/JSON; charset=utf-8")
    assert is_json("application/problem+json")
    assert not is_json(None) and not is_json("") and not is_json("text/json") and not is_json("application/jsonl")

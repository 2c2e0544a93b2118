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
from gateway.api.disconnect import ClientDisconnected
from gateway.api.errors import install_error_handlers
from gateway.api.openai.protocol import EmbeddingRequest
from gateway.contract import EngineOverloadedError
from gateway.errors import ModelNotFoundError


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


def _raising_app(route_class: type[APIRoute]) -> FastAPI:
    """An endpoint that fails the ways a service can: an error of the gateway's tree, a disconnect,
    and a bug (the last resort: 500 from the outermost middleware)."""
    router = APIRouter(route_class=route_class)

    @router.post("/v1/embeddings")
    async def create(body: EmbeddingRequest, request: Request) -> Response:
        inputs = list(body.to_spec().inputs)
        if inputs == ["missing"]:
            raise ModelNotFoundError("model 'x' is not served here", param="model")
        if inputs == ["busy"]:
            raise EngineOverloadedError("engine e is at capacity", engine="e", retry_after=2.0)
        if inputs == ["gone"]:
            raise ClientDisconnected()
        raise RuntimeError("a bug")

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    if route_class is JsonBodyRoute:  # called past routing, as the front door calls it
        app.add_middleware(_Direct, route=router.routes[0])
    return app


class _Direct:
    """What the front door does for a route that serves itself: call it without the router (and
    without the exception middleware the router sits behind)."""

    def __init__(self, app: Any, route: Any) -> None:
        self.app, self.route = app, route

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == self.route.path:
            assert self.route.direct
            scope["route"] = self.route
            await self.route.app(scope, receive, send)
        else:
            await self.app(scope, receive, send)


@pytest.mark.parametrize("text", ["missing", "busy", "gone", "bug"])
def test_an_endpoints_errors_are_answered_as_fastapis_route_answers_them(text: str) -> None:
    lean = TestClient(_raising_app(JsonBodyRoute), raise_server_exceptions=False)
    stock = TestClient(_raising_app(APIRoute), raise_server_exceptions=False)
    body = {"model": "m", "input": [text]}
    a, b = lean.post("/v1/embeddings", json=body), stock.post("/v1/embeddings", json=body)
    assert (a.status_code, a.content, a.headers.get("retry-after")) == (b.status_code, b.content, b.headers.get("retry-after"))
    assert a.status_code == {"missing": 404, "busy": 429, "gone": 499, "bug": 500}[text]


def test_the_embedding_routes_serve_themselves_and_the_front_door_calls_them_directly() -> None:
    from gateway.api.openai.routes import router as openai_router
    from gateway.api.policy import RouteMap

    routes = RouteMap(openai_router.routes)
    for path in ("/v1/embeddings", "/embeddings", "/v1/chunk-embeddings", "/chunk-embeddings"):
        direct = routes.match("POST", path).direct
        assert direct is not None and getattr(direct, "path", None) == path
    assert routes.match("GET", "/v1/embeddings").direct is None  # a 405 goes through the router
    assert routes.match("GET", "/v1/models").direct is None and routes.match("GET", "/v1/models/m").direct is None

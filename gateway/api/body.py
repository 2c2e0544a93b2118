"""``JsonBodyRoute``: a route whose one pydantic body is parsed and validated in one pass, and
which serves itself.

FastAPI reads a JSON body through its per-request dependency machinery (content-type parsing with
``email.message``, ``json.loads``, then validation of the Python objects, then solving the
endpoint's parameters), behind its exception middleware, the router's matching and its per-route
request handling (exit stacks for dependencies with ``yield``). In front of a fast engine that is
a noticeable part of what the gateway adds (docs/benchmarks.md). For a route whose endpoint takes
only its body model and the ``Request`` and returns a ``Response``, this route class's ASGI app
reads the body, has pydantic-core parse and validate the JSON together
(``model_validate_json``), calls the endpoint and answers what it raises through the app's own
exception handlers, found as Starlette's exception middleware finds them; what no handler but
the catch-all takes goes on to Starlette's outermost middleware, as it would from any route. So
the front door (:mod:`gateway.api.middleware`) can call it directly, past routing
(:attr:`JsonBodyRoute.direct`), and the router reaching it gives the same answers.

Nothing a client sees changes: the OpenAPI schema (built from the same signature), every error
(the same ``RequestValidationError``, with FastAPI's locations, for an empty body, a body that is
not JSON or not declared as JSON, and each invalid field; the same handlers for the endpoint's
errors). Any other route is FastAPI's own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["JsonBodyRoute", "is_json", "validated_body"]


#: what FastAPI reports for a body that is not a JSON object (validated as the model from Python)
_NOT_AN_OBJECT = {
    "type": "model_attributes_type", "loc": ("body",),
    "msg": "Input should be a valid dictionary or object to extract fields from",
}


def is_json(content_type: str | None) -> bool:
    """FastAPI's rule: ``application/json`` or ``application/*+json`` (parameters ignored)."""
    if not content_type:
        return False
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def validated_body(model: type[BaseModel], body: bytes, content_type: str | None) -> BaseModel:
    """``body`` as ``model``, or the ``RequestValidationError`` FastAPI raises for it."""
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    if not is_json(content_type):  # FastAPI validates the raw bytes then, which no model accepts
        raise RequestValidationError([{**_NOT_AN_OBJECT, "input": body}])
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] == "model_type" and not errors[0]["loc"]:  # JSON, but not an object
            errors = [{**_NOT_AN_OBJECT, "input": errors[0]["input"]}]
        else:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in errors]
        raise RequestValidationError(errors, body=body) from None


class JsonBodyRoute(APIRoute):
    """An API route whose endpoint is ``(body: Model, request: Request) -> Response`` serves itself
    (:attr:`direct`); any other endpoint shape is served by FastAPI's own handler."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        d = self.dependant
        other = d.path_params or d.query_params or d.header_params or d.cookie_params or d.dependencies
        model = getattr(d.body_params[0].field_info, "annotation", None) if len(d.body_params) == 1 else None
        #: the route's ASGI app reads and validates its body, calls the endpoint and answers the
        #: endpoint's errors through the app's exception handlers itself: the front door may call
        #: it without routing (:mod:`gateway.api.middleware`)
        self.direct = not other and d.request_param_name is not None and (
            isinstance(model, type) and issubclass(model, BaseModel)
        )
        if self.direct:
            assert isinstance(model, type) and d.request_param_name is not None
            self.app = self._serve(model, d.body_params[0].name, d.request_param_name)

    def _serve(self, model: type[BaseModel], body_name: str, request_name: str) -> ASGIApp:
        endpoint, path = self.endpoint, self.path

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive, send)
            try:
                parsed = validated_body(model, await request.body(), request.headers.get("content-type"))
                response = await endpoint(**{body_name: parsed, request_name: request})
                if not isinstance(response, Response):
                    raise TypeError(f"{path}: a JsonBodyRoute endpoint must return a Response")
            except Exception as exc:
                handler = _handler_for(scope, exc)
                if handler is None:  # no handler but the app's last resort: the server error middleware's
                    raise
                answer = handler(request, exc)
                response = await answer if inspect.isawaitable(answer) else answer
            await response(scope, receive, send)

        return app


def _handler_for(scope: Scope, exc: Exception) -> Callable[[Request, Exception], Any] | None:
    """The app's handler for ``exc``, found as Starlette's exception middleware finds it (the
    nearest class in its MRO); None for the catch-all ``Exception`` / 500 handler, which Starlette
    runs in its outermost middleware (it logs and answers 500)."""
    handlers: dict[Any, Any] = getattr(scope.get("app"), "exception_handlers", {})
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]  # type: ignore[no-any-return]
    return None

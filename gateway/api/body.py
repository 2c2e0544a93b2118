"""``JsonBodyRoute``: a route whose one pydantic body is parsed and validated in one pass.

FastAPI reads a JSON body through its per-request dependency machinery (content-type parsing with
``email.message``, ``json.loads``, then validation of the Python objects, then solving the
endpoint's parameters): on the embedding routes about 0.1 ms per request (timestamps inside the
gateway, docs/benchmarks.md), a tenth of what it adds in front of a fast engine. For a route whose
endpoint takes only its body model and the ``Request``, this route class reads the body and has
pydantic-core parse and validate the JSON together (``model_validate_json``), then calls the
endpoint. Nothing else changes: routing, middleware, the OpenAPI schema (built from the same
signature), the exception handlers, and every error a client sees (the same
``RequestValidationError``, with FastAPI's locations, for an empty body, a body that is not JSON
or not declared as JSON, and each invalid field). Any other route is FastAPI's own.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

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
    """An API route whose endpoint is ``(body: Model, request: Request) -> Response`` gets its
    body validated in one pass; any other endpoint shape is served by FastAPI's own handler."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        d = self.dependant
        other = d.path_params or d.query_params or d.header_params or d.cookie_params or d.dependencies
        model = getattr(d.body_params[0].field_info, "annotation", None) if len(d.body_params) == 1 else None
        request_name = d.request_param_name
        if other or request_name is None or not (isinstance(model, type) and issubclass(model, BaseModel)):
            return super().get_route_handler()
        endpoint, body_name = self.endpoint, d.body_params[0].name

        async def handler(request: Request) -> Response:
            parsed = validated_body(model, await request.body(), request.headers.get("content-type"))
            response = await endpoint(**{body_name: parsed, request_name: request})
            if not isinstance(response, Response):
                raise TypeError(f"{self.path}: a JsonBodyRoute endpoint must return a Response")
            return response

        return handler

"""One table from error class to HTTP status and OpenAI error ``type``, and the handlers.

Handlers are registered per base class; the OpenAPI ``responses`` of each route are generated from
the same table, so the documentation cannot drift from what is returned.

Every error answer is first an :class:`ApiError` (status, type, message, param, code, headers)
and then a body, made in one place (:func:`render_error`). The body satisfies two client
families at once (:func:`error_body`): OpenAI's ``{"error": {...}}`` for the OpenAI SDK and the
libraries built on it, and Jina's top-level ``{"detail": "..."}`` for Jina's clients (LangChain's
``JinaEmbeddings``, LlamaIndex's ``JinaEmbedding``), which raise ``KeyError: 'detail'`` on any
other shape; every route but TEI's answers in it (the operational ones too). TEI's routes answer
TEI's own shape (:mod:`gateway.api.tei.errors`): chosen by the route's dialect in
:func:`error_response`, and by TEI's route class for what their handlers raise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.api.disconnect import ClientDisconnected
from gateway.api.error_parts import error_headers, lookup, note
from gateway.api.policy import Dialect, policy_of
from gateway.api.quoting import quote_value
from gateway.api.tei.errors import tei_error
from gateway.contract import (
    EmbedGatewayError,
    EngineError,
    EngineOverloadedError,
    EngineTimeoutError,
    EngineUnavailableError,
    InvalidRequestError,
    PayloadTooLargeError,
    RetryableError,
)
from gateway.errors import (
    AuthenticationError,
    GatewayBusyError,
    ModelNotFoundError,
    SpaceMismatchError,
    PermissionDeniedError,
    ShuttingDownError,
    TooManyRequestsError,
)

__all__ = [
    "ERROR_TABLE",
    "ApiError",
    "ErrorBody",
    "ErrorResponse",
    "api_error",
    "error_body",
    "error_response",
    "install_error_handlers",
    "openapi_responses",
    "render_error",
    "status_of",
]

log = logging.getLogger(__name__)

#: error class -> (HTTP status, OpenAI error type); looked up along the class's MRO.
ERROR_TABLE: dict[type[EmbedGatewayError], tuple[int, str]] = {
    InvalidRequestError: (400, "invalid_request_error"),
    PayloadTooLargeError: (413, "invalid_request_error"),
    AuthenticationError: (401, "authentication_error"),
    PermissionDeniedError: (403, "permission_error"),
    ModelNotFoundError: (404, "invalid_request_error"),
    SpaceMismatchError: (409, "invalid_request_error"),
    EngineOverloadedError: (429, "rate_limit_error"),
    EngineUnavailableError: (503, "service_unavailable_error"),
    EngineTimeoutError: (504, "timeout_error"),
    RetryableError: (503, "service_unavailable_error"),
    TooManyRequestsError: (429, "rate_limit_error"),
    ShuttingDownError: (503, "service_unavailable_error"),
    GatewayBusyError: (503, "service_unavailable_error"),
    EngineError: (500, "server_error"),
    EmbedGatewayError: (500, "server_error"),
}

_HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}

#: pydantic error kinds whose message is ours (it names the value itself) or where the value is
#: the whole body or a field name, not a rejected value
_VALUE_NAMED = frozenset({
    "value_error", "assertion_error", "missing", "extra_forbidden", "json_invalid", "model_attributes_type",
    "dict_type", "union_tag_invalid", "union_tag_not_found",
})


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error body: OpenAI's ``error`` object and Jina's ``detail`` (the same message), so that
    the OpenAI SDK and Jina's clients (LangChain's ``JinaEmbeddings``, LlamaIndex's ``JinaEmbedding``)
    each find the message where they look for it."""

    error: ErrorBody = Field(description="OpenAI's error object.")
    detail: str = Field(description="error.message again, where Jina's API puts it.")


@dataclass(frozen=True, slots=True)
class ApiError:
    """One error answer before it has a body: what any route family's renderer needs."""

    status: int
    type: str
    message: str
    param: str | None = None
    code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def status_of(err: EmbedGatewayError) -> tuple[int, str]:
    return lookup(ERROR_TABLE, err, (500, "server_error"))


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object and Jina's ``detail`` (the same message) in one body: each client
    family reads its own key and ignores the other (schema: :class:`ErrorResponse`)."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}, "detail": message}


def render_error(err: ApiError) -> JSONResponse:
    """An error in OpenAI's and Jina's shape (:func:`error_body`). TEI's routes answer in TEI's
    shape instead: :func:`error_response` on their paths, and their route class
    (:class:`gateway.api.tei.routes.TeiRoute`) for what their handlers raise."""
    body = error_body(err.message, err.type, err.param, err.code)
    return JSONResponse(body, status_code=err.status, headers=dict(err.headers))


def api_error(err: EmbedGatewayError) -> ApiError:
    """An error of the tree, through the table (with ``Retry-After`` / ``WWW-Authenticate``)."""
    status, type_ = status_of(err)
    return ApiError(status, type_, err.message, err.param, err.code, error_headers(err))


def error_response(err: EmbedGatewayError, dialect: Dialect = "openai") -> JSONResponse:
    """The response for any error of the tree (handlers and the front door), in the shape of the
    route's dialect (TEI's on TEI's routes)."""
    if dialect == "tei":
        return tei_error(err)
    answer = api_error(err)
    if answer.status >= 500:
        log.warning("request failed with %d: %s", answer.status, err.message)
    note(err.code)
    return render_error(answer)


def _gateway_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, EmbedGatewayError)
    route = request.scope.get("route")
    return error_response(err, policy_of(route).dialect if route is not None else "openai")


def _validation_message(first: Mapping[str, Any]) -> tuple[str, str | None]:
    """pydantic's first error as a client-facing message and ``param``, naming the rejected value."""
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    param = ".".join(loc) or None
    msg = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    kind = first.get("type")
    if kind == "json_invalid":
        return "the request body is not valid JSON", None
    if kind == "extra_forbidden":
        return f"unrecognized request argument supplied: {param}", param
    if kind == "missing":
        return f"missing required parameter: {param}", param
    if kind in ("model_attributes_type", "dict_type") and not loc:
        return "the request body must be a JSON object", param
    message = f"{param}: {msg}" if param else msg
    if "input" in first and kind not in _VALUE_NAMED:
        message += f"; got {quote_value(first['input'])}"
    return message, param


def _validation_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, RequestValidationError)
    errors = err.errors()
    message, param = _validation_message(errors[0] if errors else {"msg": "invalid request", "loc": ()})
    note("invalid_request")
    return render_error(ApiError(400, "invalid_request_error", message, param, "invalid_request"))


def _http_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, StarletteHTTPException)
    type_ = _HTTP_TYPES.get(err.status_code, "invalid_request_error" if err.status_code < 500 else "server_error")
    note(type_)
    headers = getattr(err, "headers", None) or {}
    return render_error(ApiError(err.status_code, type_, str(err.detail), headers=headers))


def _client_gone(request: Request, err: Exception) -> JSONResponse:
    # Nobody reads this; 499 (nginx's "client closed request") keeps logs and metrics honest.
    note("client_closed_request")
    return render_error(ApiError(499, "invalid_request_error", "client closed the request"))


def _unexpected(request: Request, err: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=err)
    note("internal_error")
    return render_error(ApiError(500, "server_error", "internal server error", code="internal_error"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EmbedGatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnected, _client_gone)
    app.add_exception_handler(Exception, _unexpected)


def openapi_responses(*errors: type[EmbedGatewayError], auth: bool = True) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that can raise ``errors`` (always includes 400 and 500; 401 when
    the route is behind the API keys)."""
    out: dict[int | str, dict[str, Any]] = {}
    for cls in (InvalidRequestError, *((AuthenticationError,) if auth else ()), *errors, EmbedGatewayError):
        status, type_ = ERROR_TABLE[cls]
        out[status] = {"model": ErrorResponse, "description": f"{type_} ({cls.__name__})"}
    return out

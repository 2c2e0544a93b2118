"""One table from error class to HTTP status and OpenAI error ``type``, and the handlers.

Handlers are registered per base class; the OpenAPI ``responses`` of each route are generated from
the same table, so the documentation cannot drift from what is returned.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.api.disconnect import ClientDisconnected
from gateway.api.schemas import ErrorResponse
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
from gateway.obs.context import current_request
from gateway.errors import (
    AuthenticationError,
    GatewayBusyError,
    ModelNotFoundError,
    PermissionDeniedError,
    ShuttingDownError,
    TooManyRequestsError,
)

__all__ = [
    "ERROR_TABLE",
    "error_body",
    "error_response",
    "install_error_handlers",
    "openapi_responses",
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


def status_of(err: EmbedGatewayError) -> tuple[int, str]:
    for cls in type(err).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]  # type: ignore[index]
    return 500, "server_error"


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _note(code: str | None) -> None:
    """The request's error code, for its log line and its failure metric."""
    ctx = current_request.get()
    if ctx is not None and code:
        ctx.error_code = code


def error_response(err: EmbedGatewayError) -> JSONResponse:
    """The response for any error of the tree, through the table (handlers and the front door)."""
    status, type_ = status_of(err)
    headers = {}
    if isinstance(err, RetryableError | GatewayBusyError):
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after or 1)))
    if isinstance(err, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    if status >= 500:
        log.warning("request failed with %d: %s", status, err.message)
    _note(err.code)
    return JSONResponse(error_body(err.message, type_, err.param, err.code), status_code=status, headers=headers)


def _gateway_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, EmbedGatewayError)
    return error_response(err)


def _validation_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, RequestValidationError)
    errors = err.errors()
    first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    param = ".".join(loc) or None
    msg = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    kind = first.get("type")
    if kind == "json_invalid":
        message, param = "the request body is not valid JSON", None
    elif kind == "extra_forbidden":
        message = f"unrecognized request argument supplied: {param}"
    elif kind == "missing":
        message = f"missing required parameter: {param}"
    elif kind in ("model_attributes_type", "dict_type") and not loc:
        message = "the request body must be a JSON object"
    else:
        message = f"{param}: {msg}" if param else msg
    _note("invalid_request")
    return JSONResponse(error_body(message, "invalid_request_error", param, "invalid_request"), status_code=400)


def _http_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, StarletteHTTPException)
    type_ = _HTTP_TYPES.get(err.status_code, "invalid_request_error" if err.status_code < 500 else "server_error")
    _note(type_)
    return JSONResponse(
        error_body(str(err.detail), type_, None, None),
        status_code=err.status_code,
        headers=getattr(err, "headers", None),
    )


def _client_gone(request: Request, err: Exception) -> JSONResponse:
    # Nobody reads this; 499 (nginx's "client closed request") keeps logs and metrics honest.
    _note("client_closed_request")
    return JSONResponse(error_body("client closed the request", "invalid_request_error"), status_code=499)


def _unexpected(request: Request, err: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=err)
    _note("internal_error")
    return JSONResponse(error_body("internal server error", "server_error", None, "internal_error"), status_code=500)


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

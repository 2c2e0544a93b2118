"""TEI's error bodies and statuses, for the TEI routes only (the OpenAI/Jina routes keep theirs).

TEI answers ``{"error": "...", "error_type": "Validation"}`` with 422 (validation, tokenizer, too
long), 400 (``Empty``), 413 (payload too large), 424 (``Backend``), 429 (``Overloaded``, with
``Retry-After``) and 503 (``Unhealthy``). One table maps the gateway's error tree onto those, like
:data:`gateway.api.errors.ERROR_TABLE` does for OpenAI's shape; the TEI routes render through
it (:class:`gateway.api.tei.routes.TeiRoute`), and so does the front door for requests it
refuses on their way to a TEI route (its dialect, :mod:`gateway.api.policy`).
"""

from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from gateway.api.error_parts import error_headers, lookup, note
from gateway.api.tei.protocol import EMPTY, TeiErrorType
from gateway.contract import (
    EmbedGatewayError,
    EngineError,
    EngineOverloadedError,
    EngineTimeoutError,
    EngineUnavailableError,
    InputTooLongError,
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

__all__ = ["TEI_ERROR_TABLE", "tei_error", "tei_validation_error"]

log = logging.getLogger(__name__)

#: error class -> (HTTP status, TEI ``error_type``); looked up along the class's MRO.
TEI_ERROR_TABLE: dict[type[EmbedGatewayError], tuple[int, TeiErrorType]] = {
    PayloadTooLargeError: (413, "Validation"),
    InvalidRequestError: (422, "Validation"),
    ModelNotFoundError: (422, "Validation"),
    SpaceMismatchError: (409, "Validation"),
    AuthenticationError: (401, "Unauthorized"),
    PermissionDeniedError: (403, "Unauthorized"),
    EngineOverloadedError: (429, "Overloaded"),
    TooManyRequestsError: (429, "Overloaded"),
    EngineTimeoutError: (504, "Backend"),
    EngineUnavailableError: (503, "Unhealthy"),
    RetryableError: (503, "Unhealthy"),
    ShuttingDownError: (503, "Unhealthy"),
    GatewayBusyError: (503, "Unhealthy"),
    EngineError: (424, "Backend"),
    EmbedGatewayError: (500, "Backend"),
}


def _message(err: EmbedGatewayError) -> str:
    if isinstance(err, InputTooLongError):  # TEI's wording, plus which input and the way out
        where = f"inputs[{err.index}]" if err.index >= 0 else "inputs"
        return (
            f"`inputs` must have less than {err.limit} tokens. Given: {err.n_tokens} ({where}; instruction and "
            'special tokens included; send "truncate": true to cut it)'
        )
    return err.message


def _body(message: str, type_: TeiErrorType, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": type_}, status_code=status, headers=headers)


def tei_error(err: EmbedGatewayError) -> JSONResponse:
    """The TEI response for any error of the tree (TEI routes and the front door on TEI paths)."""
    status, type_ = lookup(TEI_ERROR_TABLE, err, (500, "Backend"))
    headers = error_headers(err)
    if status >= 500:
        log.warning("request failed with %d: %s", status, err.message)
    note(err.code)
    return _body(_message(err), type_, status, headers)


def tei_validation_error(err: RequestValidationError) -> JSONResponse:
    """A body that does not parse or fit the schema: TEI's ``Empty`` (400) for an empty input,
    else ``Validation`` (422) naming the field."""
    errors = err.errors()
    first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
    kind = first.get("type")
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    field = ".".join(loc)
    msg = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    if any(e.get("type") == EMPTY for e in errors):
        note("empty")
        empty = next(e for e in errors if e.get("type") == EMPTY)
        return _body(str(empty.get("msg")), "Empty", 400)
    if kind == "json_invalid":
        message = "the request body is not valid JSON"
    elif kind == "missing":
        message = f"missing field `{field}`"
    elif kind in ("model_attributes_type", "dict_type") and not loc:
        message = "the request body must be a JSON object"
    else:
        message = f"{field}: {msg}" if field else msg
    note("invalid_request")
    return _body(message, "Validation", 422)

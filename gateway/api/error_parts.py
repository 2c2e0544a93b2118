"""What every error renderer shares, whatever the body's shape (OpenAI+Jina in
:mod:`gateway.api.errors`, TEI's in :mod:`gateway.api.tei.errors`): the table lookup along an error
class's MRO, the headers an error class implies, and noting the error on the request's context."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeVar

from gateway.contract import EmbedGatewayError, RetryableError
from gateway.errors import AuthenticationError, GatewayBusyError
from gateway.obs.context import current_request

__all__ = ["error_headers", "lookup", "note"]

_V = TypeVar("_V")


def lookup(table: Mapping[type[EmbedGatewayError], _V], err: EmbedGatewayError, default: _V) -> _V:
    """``table``'s entry for the nearest class of ``err`` that it names."""
    for cls in type(err).__mro__:
        if cls in table:
            return table[cls]  # type: ignore[index]
    return default


def error_headers(err: EmbedGatewayError) -> dict[str, str]:
    """``Retry-After`` (whole seconds, at least 1) for what a client may retry; ``WWW-Authenticate``
    for a missing or wrong key."""
    headers: dict[str, str] = {}
    if isinstance(err, RetryableError | GatewayBusyError):
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after or 1)))
    if isinstance(err, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    return headers


def note(code: str | None) -> None:
    """The request's error code, for its log line and its failure metric."""
    ctx = current_request.get()
    if ctx is not None and code:
        ctx.error_code = code

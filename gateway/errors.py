"""Errors only the gateway raises: its keys, its model aliases, its own door, its reloads.

They extend the engine-facing tree of :mod:`gateway.contract.errors` (so the one error table,
:mod:`gateway.api.errors`, maps them all), but no engine ever raises one, so the contract does not
carry them.

    EmbedGatewayError (gateway.contract)
    ├── InvalidRequestError
    │   └── ReloadError              a reload was refused; the running configuration stays (400)
    ├── AuthenticationError          missing or wrong API key (401)
    ├── PermissionDeniedError        a valid key without the right (403)
    ├── ModelNotFoundError           unknown model alias (404)
    ├── SpaceMismatchError           the request pinned a vector space it would not be served in (409)
    └── GatewayBusyError             the gateway itself refuses work before any engine sees it
        ├── TooManyRequestsError     ``limits.max_concurrent_requests`` in flight (429)
        └── ShuttingDownError        SIGTERM received: draining, no new work (503)

A ``GatewayBusyError`` tells the client to come back later: it carries ``retry_after`` seconds,
sent as the ``Retry-After`` header.
"""

from __future__ import annotations

from gateway.contract import EmbedGatewayError, InvalidRequestError

__all__ = [
    "AuthenticationError",
    "GatewayBusyError",
    "ModelNotFoundError",
    "PermissionDeniedError",
    "ReloadError",
    "ShuttingDownError",
    "SpaceMismatchError",
    "TooManyRequestsError",
]


class AuthenticationError(EmbedGatewayError):
    code = "invalid_api_key"


class PermissionDeniedError(EmbedGatewayError):
    code = "permission_denied"


class ModelNotFoundError(EmbedGatewayError):
    code = "model_not_found"


class SpaceMismatchError(EmbedGatewayError):
    """``x-embed-expect-space`` names another space than the one the request would be served in:
    vectors of two spaces must never meet in one store (docs/api.md, "Vector spaces")."""

    code = "space_mismatch"


class ReloadError(InvalidRequestError):
    """A reload was refused; the previous configuration stays in force (a 400 on /admin/reload)."""

    code = "invalid_config"


class GatewayBusyError(EmbedGatewayError):
    """The gateway refuses the request at its door (no engine was tried, so there is no fallback).

    Not a ``RetryableError``: the router never sees it. Clients should retry after ``retry_after``."""

    code = "busy"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyRequestsError(GatewayBusyError):
    code = "too_many_concurrent_requests"


class ShuttingDownError(GatewayBusyError):
    code = "shutting_down"

"""The gateway's error tree.

Every failure the gateway can report is one of these classes; the HTTP layer maps each class to a
status code and an OpenAI error ``type`` through one table (:mod:`gateway.api.errors`). Engines
translate foreign failures (torch, httpx, a vLLM error body) into this tree at their own boundary;
the router decides what to do from the class alone, never from a message.

    EmbedGatewayError
    ├── InvalidRequestError          the request itself is wrong; no engine can help (400)
    │   ├── InputTooLongError        an input exceeds the token limit and truncate is off
    │   ├── UnsupportedTaskError     no enabled engine serves the task / the capability asked for
    │   └── PayloadTooLargeError     the body or the token total is over a configured limit (413)
    │       └── TooManyTokensError   the request's tokens exceed ``limits.max_tokens_per_request``
    ├── AuthenticationError          missing or wrong API key (401)
    ├── PermissionDeniedError        a valid key without the right (403)
    ├── ModelNotFoundError           unknown model alias (404)
    ├── RetryableError               the engine could not do it now; another engine may (fallback)
    │   ├── EngineUnavailableError   not started, dead, unreachable, circuit open (503)
    │   ├── EngineTimeoutError       deadline passed (504)
    │   └── EngineOverloadedError    queue full; carries ``retry_after`` seconds (429)
    ├── GatewayBusyError             the gateway itself refuses work before any engine sees it
    │   ├── TooManyRequestsError     ``limits.max_concurrent_requests`` in flight (429)
    │   └── ShuttingDownError        SIGTERM received: draining, no new work (503)
    └── EngineError                  the engine failed in a way retrying will not fix (500)

Every error that tells a client to come back later (``RetryableError``, ``GatewayBusyError``)
carries ``retry_after`` seconds, sent as the ``Retry-After`` header.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "EmbedGatewayError",
    "EngineError",
    "EngineOverloadedError",
    "EngineTimeoutError",
    "EngineUnavailableError",
    "GatewayBusyError",
    "InputTooLongError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RetryableError",
    "ShuttingDownError",
    "TooManyRequestsError",
    "TooManyTokensError",
    "UnsupportedTaskError",
    "is_retryable",
]


class EmbedGatewayError(Exception):
    """Base of every error the gateway reports.

    ``message`` is safe to show a client (no paths, no stack traces); ``param`` names the request
    field at fault, ``code`` is a stable machine-readable reason.
    """

    code: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequestError(EmbedGatewayError):
    code = "invalid_request"


class InputTooLongError(InvalidRequestError):
    code = "input_too_long"

    def __init__(self, index: int, n_tokens: int, limit: int) -> None:
        super().__init__(
            f"input[{index}] has {n_tokens} tokens, more than the model maximum of {limit} "
            f"(instruction and special tokens included); shorten it or set \"truncate\": true",
            param=f"input[{index}]" if index >= 0 else "input",
        )
        self.index = index
        self.n_tokens = n_tokens
        self.limit = limit


class UnsupportedTaskError(InvalidRequestError):
    code = "unsupported_task"


class PayloadTooLargeError(InvalidRequestError):
    code = "payload_too_large"


class TooManyTokensError(PayloadTooLargeError):
    """Raised by an engine once it has counted a job's tokens, before any forward pass."""

    code = "too_many_tokens"

    def __init__(self, n_tokens: int, limit: int) -> None:
        super().__init__(
            f"the request has {n_tokens} tokens (instruction and special tokens included), more than "
            f"limits.max_tokens_per_request = {limit}; split it into smaller requests",
            param="input",
        )
        self.n_tokens = n_tokens
        self.limit = limit


class AuthenticationError(EmbedGatewayError):
    code = "invalid_api_key"


class PermissionDeniedError(EmbedGatewayError):
    code = "permission_denied"


class ModelNotFoundError(EmbedGatewayError):
    code = "model_not_found"


class RetryableError(EmbedGatewayError):
    """The engine could not serve the job now; the same job may succeed elsewhere or later."""

    code = "engine_unavailable"

    def __init__(
        self,
        message: str,
        *,
        engine: str | None = None,
        retry_after: float | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.engine = engine
        self.retry_after = retry_after


class EngineUnavailableError(RetryableError):
    code = "engine_unavailable"


class EngineTimeoutError(RetryableError):
    code = "timeout"


class EngineOverloadedError(RetryableError):
    code = "overloaded"


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


class EngineError(EmbedGatewayError):
    """A failure inside an engine that retrying will not fix (a bug, a corrupt checkpoint)."""

    code = "engine_error"

    def __init__(self, message: str, *, engine: str | None = None) -> None:
        super().__init__(message)
        self.engine = engine


def is_retryable(err: BaseException) -> bool:
    """Whether another engine (or a later attempt) may succeed where this one failed."""
    return isinstance(err, RetryableError)

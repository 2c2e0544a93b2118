"""The engine-facing error tree: what an engine may raise, and what the router reads.

Engines translate foreign failures (torch, httpx, a vLLM error body) into this tree at their own
boundary; the router decides what to do from the class alone, never from a message. The HTTP
layer maps each class to a status code and an OpenAI error ``type`` through one table
(:mod:`gateway.api.errors`). Errors only the gateway raises (keys, model aliases, its own door,
reloads) extend this tree in :mod:`gateway.errors`.

    EmbedGatewayError
    ├── InvalidRequestError          the request itself is wrong; no engine can help (400)
    │   ├── InputTooLongError        an input exceeds the token limit and truncate is off
    │   ├── UnsupportedTaskError     no enabled engine serves the task / the capability asked for
    │   └── PayloadTooLargeError     the body or the token total is over a configured limit (413)
    │       └── TooManyTokensError   the request's tokens exceed ``limits.max_tokens_per_request``
    ├── RetryableError               the engine could not do it now; another engine may (fallback)
    │   ├── EngineUnavailableError   not started, dead, unreachable, circuit open (503)
    │   ├── EngineTimeoutError       deadline passed (504)
    │   └── EngineOverloadedError    queue full; carries ``retry_after`` seconds (429)
    └── EngineError                  the engine failed in a way retrying will not fix (500)

Every ``RetryableError`` carries ``retry_after`` seconds (or None), sent as the ``Retry-After`` header.
"""

from __future__ import annotations

__all__ = [
    "EmbedGatewayError",
    "EngineError",
    "EngineOverloadedError",
    "EngineTimeoutError",
    "EngineUnavailableError",
    "InputTooLongError",
    "InvalidRequestError",
    "PayloadTooLargeError",
    "RetryableError",
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


class EngineError(EmbedGatewayError):
    """A failure inside an engine that retrying will not fix (a bug, a corrupt checkpoint)."""

    code = "engine_error"

    def __init__(self, message: str, *, engine: str | None = None) -> None:
        super().__init__(message)
        self.engine = engine


def is_retryable(err: BaseException) -> bool:
    """Whether another engine (or a later attempt) may succeed where this one failed."""
    return isinstance(err, RetryableError)

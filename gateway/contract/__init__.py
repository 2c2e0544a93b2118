"""The narrow contract between the gateway and its engines.

Everything an engine needs to know about the gateway, and everything the gateway needs to know
about an engine, is in this package: the task vocabulary, the job and result types, the engine
protocol and the error tree. It imports neither FastAPI nor torch (a test proves it), so an
engine can be written, and the gateway can be installed, without either.
"""

from gateway.contract.chunking import ChunkingRule
from gateway.contract.engine import (
    NULL_OBSERVER,
    Engine,
    EngineCapabilities,
    EngineObserver,
    EmbedJob,
    EmbedResult,
    Health,
    Token,
    TokenIds,
    Tokenized,
    Tokenizer,
    TruncationDirection,
)
from gateway.contract.errors import (
    AuthenticationError,
    EmbedGatewayError,
    EngineError,
    EngineOverloadedError,
    EngineTimeoutError,
    EngineUnavailableError,
    GatewayBusyError,
    InputTooLongError,
    InvalidRequestError,
    ModelNotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RetryableError,
    ShuttingDownError,
    TooManyRequestsError,
    TooManyTokensError,
    UnsupportedTaskError,
    is_retryable,
)
from gateway.contract.tasks import TASKS, Task, parse_task

__all__ = [
    "NULL_OBSERVER",
    "TASKS",
    "AuthenticationError",
    "ChunkingRule",
    "EmbedGatewayError",
    "EmbedJob",
    "EmbedResult",
    "Engine",
    "EngineCapabilities",
    "EngineError",
    "EngineOverloadedError",
    "EngineTimeoutError",
    "EngineUnavailableError",
    "EngineObserver",
    "GatewayBusyError",
    "Health",
    "InputTooLongError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RetryableError",
    "ShuttingDownError",
    "Task",
    "Token",
    "TokenIds",
    "Tokenized",
    "Tokenizer",
    "TooManyRequestsError",
    "TooManyTokensError",
    "TruncationDirection",
    "UnsupportedTaskError",
    "is_retryable",
    "parse_task",
]

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
    EmbedGatewayError,
    EngineError,
    EngineOverloadedError,
    EngineTimeoutError,
    EngineUnavailableError,
    InputTooLongError,
    InvalidRequestError,
    PayloadTooLargeError,
    RetryableError,
    TooManyTokensError,
    UnsupportedTaskError,
    is_retryable,
)
from gateway.contract.retry_after import parse_retry_after
from gateway.contract.tasks import ROUTE_KEYS, TASKS, Task, parse_task, route_key

__all__ = [
    "NULL_OBSERVER",
    "ROUTE_KEYS",
    "TASKS",
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
    "Health",
    "InputTooLongError",
    "InvalidRequestError",
    "PayloadTooLargeError",
    "RetryableError",
    "Task",
    "Token",
    "TokenIds",
    "Tokenized",
    "Tokenizer",
    "TooManyTokensError",
    "TruncationDirection",
    "UnsupportedTaskError",
    "is_retryable",
    "parse_retry_after",
    "parse_task",
    "route_key",
]

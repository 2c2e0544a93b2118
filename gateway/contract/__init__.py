"""The narrow contract between the gateway and its engines.

Everything an engine needs to know about the gateway, and everything the gateway needs to know
about an engine, is in this package: the task vocabulary, the job and result types, the engine
protocol and the error tree. It imports neither FastAPI nor torch (a test proves it), so an
engine can be written, and the gateway can be installed, without either.
"""

from gateway.contract.chunking import ChunkingRule
from gateway.contract.engine import (
    DENSE,
    MULTIVECTOR,
    NULL_OBSERVER,
    OUTPUTS,
    SPARSE,
    Engine,
    EngineCapabilities,
    EngineObserver,
    EmbedJob,
    EmbedResult,
    Health,
    Output,
    SparseVector,
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
from gateway.contract.tasks import NO_TASK, ROUTE_KEYS, TASKS, Task, parse_task, route_key, task_of_key

__all__ = [
    "DENSE",
    "MULTIVECTOR",
    "NO_TASK",
    "NULL_OBSERVER",
    "OUTPUTS",
    "SPARSE",
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
    "Output",
    "PayloadTooLargeError",
    "RetryableError",
    "SparseVector",
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
    "task_of_key",
]

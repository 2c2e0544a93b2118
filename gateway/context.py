"""What one request is, as far as logs and metrics care: its id and what the service decided.

Why a context variable: the request id must be on every log line a request causes (the service's
fallback warnings, an engine's errors), and the request's metrics need labels that only the
service knows (the model alias, the task, the engine that served). The front door
(:mod:`gateway.api.middleware`) opens a :class:`RequestContext`; the service fills it in as it
decides; the front door records the finished request from it. Tasks started by the request
(disconnect watching, retries) inherit the same object.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = ["RequestContext", "current_request", "request_id"]


@dataclass(slots=True)
class RequestContext:
    request_id: str
    #: the route template (``/v1/embeddings``), or ``other`` for paths no route matched
    route: str = "other"
    #: a configured alias (never a client's unknown model name: metric labels stay bounded)
    model: str = ""
    #: the route key of the task (``text-matching``, ..., ``none``)
    task: str = ""
    #: the engine that served it (or the last one tried)
    engine: str = ""
    inputs: int = 0
    tokens: int = 0
    queue_seconds: float = 0.0
    inference_seconds: float = 0.0
    fallbacks: int = 0
    #: the error code of a failed request (``overloaded``, ``timeout``, ...)
    error_code: str = ""
    #: the request texts, only when ``server.log_request_texts`` is on
    texts: list[str] = field(default_factory=list)


current_request: ContextVar[RequestContext | None] = ContextVar("embed_gateway_request", default=None)


def request_id() -> str:
    """The current request's id ('' outside a request)."""
    ctx = current_request.get()
    return ctx.request_id if ctx is not None else ""

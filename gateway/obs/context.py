"""What one request is: its id, the snapshot it runs on, and what the service decided.

Why a context variable: the request id must be on every log line a request causes (the service's
fallback warnings, an engine's errors), and the request's metrics and response headers need facts
that only the service knows (the model alias, the task, the engine that served, its timings). The
front door (:mod:`gateway.api.middleware`) opens a :class:`RequestContext` with the snapshot it
read (the one configuration generation the whole request sees); the service fills it in as it
decides; the route's headers and the front door's log line and metrics are read from it. This is
the one channel for a request's facts: the service returns only the vectors. Tasks started by the
request (disconnect watching, retries) inherit the same object.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.pool.snapshot import Snapshot

__all__ = ["RequestContext", "current_request", "request_id", "request_snapshot"]


@dataclass(slots=True)
class RequestContext:
    request_id: str
    #: the configuration generation this request runs on (read once, at the front door)
    snapshot: Snapshot | None = None
    #: the route template (``/v1/embeddings``), or ``other`` for paths no route matched
    route: str = "other"
    #: a configured alias or model id (never a client's unknown model name: metric labels stay bounded)
    model: str = ""
    #: the model that served it (its id in the catalog), whatever name the request used
    model_id: str = ""
    #: the route key of the task (``text-matching``, ..., ``none``)
    task: str = ""
    #: the engine that served it (or the last one tried)
    engine: str = ""
    inputs: int = 0
    tokens: int = 0
    queue_seconds: float = 0.0
    inference_seconds: float = 0.0
    fallbacks: int = 0
    #: the vector space of its vectors (``x-embed-space``)
    space: str = ""
    #: where its vectors came from (``x-embed-cache``: memory, redis, miss, partial, off)
    cache: str = ""
    #: the error code of a failed request (``overloaded``, ``timeout``, ...)
    error_code: str = ""
    #: the request texts, only when ``server.log_request_texts`` is on
    texts: list[str] = field(default_factory=list)


current_request: ContextVar[RequestContext | None] = ContextVar("embed_gateway_request", default=None)


def request_id() -> str:
    """The current request's id ('' outside a request)."""
    ctx = current_request.get()
    return ctx.request_id if ctx is not None else ""


def request_snapshot() -> Snapshot:
    """The snapshot the front door read for the current request (routes use it, never the pool's
    current one, so a request sees one configuration generation)."""
    ctx = current_request.get()
    if ctx is None or ctx.snapshot is None:
        raise RuntimeError("no request in progress: the front door sets the snapshot")
    return ctx.snapshot

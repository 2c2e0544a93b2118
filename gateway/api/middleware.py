"""The front door: every HTTP request passes here before any route (a pure ASGI middleware).

On the way in, in this order:

1. a request id: the client's ``X-Request-ID`` when it is a sane token, else a new one; it is on
   every log line the request causes and echoed on every response, errors included;
2. the client API keys (:func:`gateway.api.auth.check_client`): every route but the open ones
   (``auth.open_paths()``: ``/health`` and ``/ready`` by default, for probes that send no key;
   ``/admin/*`` checks its own key);
3. the body size, ``limits.max_body_bytes``: a ``Content-Length`` over it is refused before a
   byte is read; a chunked body is counted as it arrives (and buffered: at most the limit);
4. embedding requests pass the :class:`~gateway.lifecycle.Gate`: 429 beyond
   ``limits.max_concurrent_requests``, 503 while shutting down.

Then the request goes on through routing, or, for a route that serves itself (the embedding
routes, :class:`gateway.api.body.JsonBodyRoute`: it reads its body, calls its endpoint and answers
errors through the app's handlers), straight to that route, as the router would call it: in front
of a fast engine the layers between here and the endpoint (exception middleware, the router's
matching, FastAPI's per-route request handling) are a noticeable part of what the gateway adds.

The front door reads the pool's current snapshot once and puts it on the request's
:class:`gateway.obs.context.RequestContext`: the keys, limits and engines of one configuration
generation serve the whole request, and a request that calls an engine (embedding, tokenising)
holds that snapshot (its engines stay open) until its response is out. A refusal is rendered
through the one error table (:func:`gateway.api.errors.error_response`), in the same body as every
other error of the path it was sent to (TEI's shape on TEI's paths). On the way out: one
access-log line and the request's metrics, labelled with what the service decided (model alias,
task, engine).

Why pure ASGI rather than Starlette's ``BaseHTTPMiddleware``: the route's disconnect watcher
(:mod:`gateway.api.disconnect`) must read the client's real ``receive`` channel, and refusals
must happen before the body is read.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextlib import nullcontext
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.auth import check_client
from gateway.api.errors import error_response
from gateway.api.policy import Matched, RouteMap
from gateway.contract import EmbedGatewayError, PayloadTooLargeError
from gateway.obs.context import RequestContext, current_request
from gateway.pool import Pool

__all__ = ["FrontDoor", "sane_request_id"]

log = logging.getLogger("gateway.access")

#: polled by probes and Prometheus: their access lines are debug-level
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def sane_request_id(given: str | None) -> str:
    """The client's request id if it is a plain token (it goes into logs and headers), else a new one."""
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class FrontDoor:
    """``routes``: the app's routes (:class:`gateway.api.policy.RouteMap`): which embed (the gate
    bounds them), which call an engine (they hold their snapshot), which dialect each speaks, and
    their templates, to label requests refused before routing with their route, not their raw path."""

    def __init__(self, app: ASGIApp, routes: RouteMap) -> None:
        self.app = app
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        pool: Pool = state.pool
        matched = self._routes.match(scope["method"], scope["path"])
        headers = Headers(scope=scope)
        with pool.acquire() if matched.policy.holds_snapshot else nullcontext(pool.current) as snap:
            await self._serve(scope, receive, send, RequestContext(
                sane_request_id(headers.get("x-request-id")), snapshot=snap
            ), headers, matched)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext, headers: Headers, matched: Matched
    ) -> None:
        state = scope["app"].state
        started = time.perf_counter()
        policy = matched.policy
        path: str = scope["path"]
        token = current_request.set(ctx)
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                raw = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in raw):
                    raw.append((b"x-request-id", ctx.request_id.encode("latin-1")))
                message = {**message, "headers": raw}
            await send(message)

        gate = state.gate
        admitted = False
        try:
            try:
                assert ctx.snapshot is not None
                settings = ctx.snapshot.settings
                if path not in settings.auth.open_paths() and not path.startswith("/admin/"):
                    check_client(settings.auth, headers.get("authorization"))
                if scope["method"] in _BODY_METHODS:
                    receive = await _limit_body(headers, receive, settings.limits.max_body_bytes)
                if policy.work:
                    gate.enter(settings.limits.max_concurrent_requests)
                    admitted = True
                    state.metrics.in_flight.inc()
            except EmbedGatewayError as err:
                await error_response(err, policy.dialect)(scope, receive, send_with_id)
                return
            route = matched.direct
            if route is None or scope.get("root_path"):
                await self.app(scope, receive, send_with_id)
            else:  # a route that serves itself: past routing, as the router would call it
                scope["route"], scope["endpoint"], scope["path_params"] = route, getattr(route, "endpoint", None), {}
                await route.app(scope, receive, send_with_id)  # type: ignore[attr-defined]
        finally:
            if admitted:
                gate.leave()
                state.metrics.in_flight.dec()
            ctx.route = _route_of(scope, matched.template)
            elapsed = time.perf_counter() - started
            state.metrics.record_request(ctx, status or 500, elapsed)
            _access_log(scope, ctx, status or 500, elapsed)
            current_request.reset(token)


def _route_of(scope: Scope, template: str) -> str:
    """The route template for metric labels (bounded: never the raw path), also for requests
    refused before routing; ``other`` for paths no route serves."""
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return str(route.path)
    return template


async def _limit_body(headers: Headers, receive: Receive, limit: int) -> Receive:
    """``receive`` unchanged when the declared length is within ``limit``; for a chunked body, a
    replay of the body read here (refused as soon as it passes the limit)."""
    declared = headers.get("content-length")
    if declared is not None:
        if declared.strip().isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(
                f"the request body has {int(declared)} bytes, more than limits.max_body_bytes = {limit}; "
                "send fewer or shorter inputs per request"
            )
        return receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left: let the route see it
            break
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            raise PayloadTooLargeError(
                f"the request body is over limits.max_body_bytes = {limit} bytes; send fewer or shorter inputs"
            )
        chunks.append(body)
        if not message.get("more_body", False):
            message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            break
    pending: list[Message] = [message]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _access_log(scope: Scope, ctx: RequestContext, status: int, seconds: float) -> None:
    path = scope["path"]
    level = logging.DEBUG if path in _QUIET_PATHS and status < 400 else logging.INFO
    if not log.isEnabledFor(level):
        return
    fields: dict[str, Any] = {
        "method": scope["method"],
        "path": path,
        "route": ctx.route,
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
    }
    if ctx.model:
        fields |= {"model": ctx.model, "model_id": ctx.model_id, "task": ctx.task, "engine": ctx.engine,
                   "inputs": ctx.inputs}
    if ctx.tokens:
        fields |= {
            "tokens": ctx.tokens,
            "queue_ms": round(ctx.queue_seconds * 1000, 2),
            "inference_ms": round(ctx.inference_seconds * 1000, 2),
            "fallbacks": ctx.fallbacks,
        }
    if ctx.error_code:
        fields["error"] = ctx.error_code
    if ctx.texts:
        fields["texts"] = ctx.texts
    log.log(level, "%s %s %d %.1fms", scope["method"], path, status, seconds * 1000,
            extra={"fields": fields, "request_id": ctx.request_id})

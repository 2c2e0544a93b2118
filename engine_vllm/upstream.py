"""``Upstream``: JSON over HTTP to one OpenAI-style server (vLLM), at as little CPU as we can.

Everything the engine asks its server goes through :meth:`Upstream.call`; every failure leaves it
as an error of the gateway's tree (:mod:`engine_vllm.errors`). Requests go straight to an httpx
transport (``httpx.AsyncClient``'s URL merging, cookies, auth and redirect machinery cost more CPU
than the loopback call itself, and the engine needs none of them); for a plain-``http`` server the
transport is :class:`~engine_vllm.transport.KeepAliveTransport`, else httpx's own. Bodies are
encoded and decoded with orjson.

Health probes have a pool of their own: a pool full of slow embedding calls must not make a
healthy server look dead.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from engine_vllm.errors import from_response, from_transport
from engine_vllm.transport import KeepAliveTransport
from gateway.contract import EngineError, EngineTimeoutError, EngineUnavailableError

__all__ = ["Upstream"]

#: connections the health probes keep (one probe at a time, one spare)
_PROBE_CONNECTIONS = 2


class Upstream:
    """One server at ``url``. ``transport`` replaces both pools (tests: ``httpx.MockTransport``)."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        api_key: str | None = None,
        connect_timeout: float,
        read_timeout: float,
        health_timeout: float,
        max_connections: int,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._name = name
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_connections = max_connections
        self._given = transport
        self._headers = [(b"content-type", b"application/json"), (b"accept", b"application/json")]
        if api_key:
            self._headers.append((b"authorization", f"Bearer {api_key}".encode("latin-1")))
        self._urls: dict[str, httpx.URL] = {}
        self._timeouts = _timeouts(read_timeout, connect=connect_timeout, pool=read_timeout)
        self._probe_timeouts = _timeouts(health_timeout, connect=min(connect_timeout, health_timeout),
                                         pool=health_timeout)
        self._pool: httpx.AsyncBaseTransport | None = None
        self._probes: httpx.AsyncBaseTransport | None = None

    @property
    def started(self) -> bool:
        return self._pool is not None

    def start(self) -> None:
        """Open the pools (no connection yet: they connect on first use). Inside the event loop."""
        self._pool = self._given or self._transport(self._max_connections)
        self._probes = self._given or self._transport(_PROBE_CONNECTIONS)

    async def aclose(self) -> None:
        for transport in {id(t): t for t in (self._pool, self._probes) if t is not None}.values():
            await transport.aclose()
        self._pool = self._probes = None

    async def call(self, method: str, path: str, body: dict[str, Any] | None, deadline: float | None) -> Any:
        """One request and its decoded JSON answer; ``deadline`` (``time.monotonic()``) bounds it."""
        pool = self._pool
        if pool is None:
            raise EngineUnavailableError(f"engine {self._name} is not started", engine=self._name)
        timeouts = self._timeouts
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EngineTimeoutError(f"engine {self._name}: the request's deadline passed", engine=self._name)
            timeouts = _timeouts(min(self._read_timeout, left), connect=min(self._connect_timeout, left), pool=left)
        content = orjson.dumps(body) if body is not None else None
        try:
            response = await self._send(pool, method, path, content, timeouts)
        except httpx.TransportError as exc:
            raise from_transport(exc, engine=self._name, url=self.url) from exc
        if not response.is_success:
            raise from_response(response, engine=self._name, what=f"{method} {path}")
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise EngineError(f"engine {self._name}: {method} {path} answered non-JSON", engine=self._name) from exc

    async def probe(self, path: str = "/health") -> int:
        """``GET path`` on the probes' own pool: its status code (httpx's transport errors propagate)."""
        probes = self._probes
        if probes is None:
            raise httpx.ConnectError("not started")
        response = await self._send(probes, "GET", path, None, self._probe_timeouts)
        return response.status_code

    async def _send(
        self, transport: httpx.AsyncBaseTransport, method: str, path: str, content: bytes | None,
        timeouts: dict[str, float],
    ) -> httpx.Response:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self.url + path)
        request = httpx.Request(method, url, content=content, headers=self._headers, extensions={"timeout": timeouts})
        response = await transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _transport(self, connections: int) -> httpx.AsyncBaseTransport:
        if self.url.startswith("http://"):
            return KeepAliveTransport(max_connections=connections)
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncHTTPTransport(limits=limits)


def _timeouts(read: float, *, connect: float, pool: float) -> dict[str, float]:
    """httpx's ``timeout`` request extension."""
    return {"connect": connect, "read": read, "write": read, "pool": pool}

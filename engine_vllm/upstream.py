"""``UpstreamHTTP``: pooled connections to one OpenAI-compatible server, shared by the HTTP engines.

Both the vLLM engine and the ``openai`` kind talk to a server of the same family: JSON over
pooled keep-alive connections, a request's deadline shortening that call's timeouts, every
failure translated into the gateway's error tree right here (:mod:`engine_vllm.errors`), so
nothing above sees an ``httpx`` exception. Health probes have a pool of their own: a pool full of
slow embedding calls must not make a healthy server look dead.

At as little CPU per call as we can: in front of a vLLM next door the gateway's own work is most
of what it adds to a request. Each call is one ``httpx.Request`` built here (the headers, the
URL and the body encoded once, by orjson) and handed straight to a transport: for a plain
``http://`` server reached directly (no credentials in the URL, no proxy from the environment)
that is :class:`~engine_vllm.transport.KeepAliveTransport`, skipping ``httpx.AsyncClient``'s URL
merging, cookies, auth and redirect machinery, none of which such a call needs, and the request and
response objects too: a call is written from a head built once per route and its answer read as
bytes (an error answer becomes an ``httpx.Response`` for the error mapping); any other server
(``https``, a proxy, ``user:password@``) goes through ``httpx.AsyncClient`` as it always did.
Answers are decoded with orjson. A ``transport`` given to the constructor (the tests'
``httpx.MockTransport``) is used the direct way too.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import orjson

from engine_vllm.errors import from_response, from_transport
from engine_vllm.transport import KeepAliveTransport, request_head, with_body
from gateway.contract import EmbedGatewayError, EngineError, EngineTimeoutError, EngineUnavailableError

__all__ = ["StatusMapper", "UpstreamHTTP", "direct"]

#: ``(response, what)`` -> the error a non-2xx answer to ``what`` (e.g. "POST /embeddings") is
StatusMapper = Callable[[httpx.Response, str], EmbedGatewayError]

#: connections the health probes keep (one probe at a time, one spare)
_PROBE_CONNECTIONS = 2

_Pool = httpx.AsyncBaseTransport | httpx.AsyncClient


def direct(url: httpx.URL) -> bool:
    """Whether ``url`` can go over :class:`KeepAliveTransport`: plain http, no credentials in it,
    and no proxy from the environment (``HTTP_PROXY``/``ALL_PROXY`` unless ``NO_PROXY`` exempts it)."""
    if url.scheme != "http" or url.userinfo:
        return False
    proxies = urllib.request.getproxies()
    return not ({"http", "all"} & proxies.keys()) or bool(urllib.request.proxy_bypass(url.host))


class UpstreamHTTP:
    """Two connection pools to ``url`` (calls, probes), opened by :meth:`open`, closed by :meth:`aclose`."""

    def __init__(
        self,
        url: str,
        *,
        engine: str,
        peer: str,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float,
        read_timeout: float,
        health_timeout: float,
        max_connections: int,
        transport: httpx.AsyncBaseTransport | None = None,
        on_status: StatusMapper | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        #: the URL for messages and health: without any ``user:password@`` part
        self.shown_url = str(httpx.URL(self.url).copy_with(username=None, password=None))
        self.engine = engine
        #: how messages name the server ("vLLM", "upstream")
        self.peer = peer
        self._headers = httpx.Headers({"content-type": "application/json", "accept": "application/json",
                                       **(headers or {})})
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._health_timeout, self._max_connections = health_timeout, max_connections
        self._transport = transport
        self._on_status: StatusMapper = on_status or (
            lambda response, what: from_response(response, engine=engine, what=what, peer=peer)
        )
        #: httpx's ``timeout`` request extension, without and with a deadline
        self._timeouts = _timeouts(read_timeout, connect=connect_timeout, pool=read_timeout)
        self._probe_timeouts = _timeouts(health_timeout, connect=min(connect_timeout, health_timeout), pool=health_timeout)
        self._urls: dict[str, httpx.URL] = {}
        self._pool: _Pool | None = None
        self._probes: _Pool | None = None
        #: (host, port): where a call over our own :class:`KeepAliveTransport` goes, written from
        #: prebuilt bytes (:meth:`_request`); any other pool gets ``httpx`` objects
        url = httpx.URL(self.url)
        self._origin = (url.host, url.port or 80)
        #: (method, path) -> its request line, Host and our headers (each call adds its length and body)
        self._heads: dict[tuple[str, str], bytes] = {}

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    def open(self) -> None:
        if self._pool is not None:
            return
        if self._transport is not None:
            self._pool = self._probes = self._transport
        elif direct(httpx.URL(self.url)):
            self._pool = KeepAliveTransport(max_connections=self._max_connections)
            self._probes = KeepAliveTransport(max_connections=_PROBE_CONNECTIONS)
        else:
            self._pool = httpx.AsyncClient(limits=httpx.Limits(
                max_connections=self._max_connections, max_keepalive_connections=self._max_connections))
            self._probes = httpx.AsyncClient(limits=httpx.Limits(
                max_connections=_PROBE_CONNECTIONS, max_keepalive_connections=_PROBE_CONNECTIONS))

    async def call(self, method: str, path: str, body: dict[str, Any] | None, deadline: float | None) -> Any:
        """One HTTP call, its parsed JSON; every failure leaves here as an error of the gateway's tree."""
        pool = self._pool
        if pool is None:
            raise EngineUnavailableError(f"engine {self.engine} is not started", engine=self.engine)
        timeouts = self._timeouts
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EngineTimeoutError(f"engine {self.engine}: the request's deadline passed", engine=self.engine)
            timeouts = _timeouts(min(self._read_timeout, left), connect=min(self._connect_timeout, left), pool=left)
        content = None if body is None else orjson.dumps(body)
        try:
            if isinstance(pool, KeepAliveTransport):
                status, headers, answer = await pool.exchange(self._origin, self._request(method, path, content), timeouts)
                if not 200 <= status < 300:  # the rare case: the error mapping reads an httpx response
                    raise self._on_status(httpx.Response(status, headers=headers, content=answer, request=httpx.Request(
                        method, self._url(path))), f"{method} {path}")
            else:
                response = await self._send(pool, method, path, content, timeouts)
                if not response.is_success:
                    raise self._on_status(response, f"{method} {path}")
                answer = response.content
        except httpx.TransportError as exc:
            raise from_transport(exc, engine=self.engine, url=self.shown_url, peer=self.peer) from exc
        try:
            return orjson.loads(answer)
        except orjson.JSONDecodeError as exc:
            raise EngineError(f"engine {self.engine}: {method} {path} answered non-JSON", engine=self.engine) from exc

    async def probe(self, path: str) -> httpx.Response:
        """``GET path`` on the probe pool. Raises ``httpx.TransportError`` (the caller words the
        health detail) or ``EngineUnavailableError`` before :meth:`open`."""
        probes = self._probes
        if probes is None:
            raise EngineUnavailableError(f"engine {self.engine} is not started", engine=self.engine)
        return await self._send(probes, "GET", path, None, self._probe_timeouts)

    async def aclose(self) -> None:
        """Close both pools; calls after this are "not started" errors, never httpx's RuntimeError."""
        pools, self._pool, self._probes = (self._pool, self._probes), None, None
        for pool in {id(p): p for p in pools if p is not None}.values():
            await pool.aclose()

    def _url(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self.url + path)
        return url

    def _request(self, method: str, path: str, content: bytes | None) -> bytes:
        """The request httpx would send (request line, its Host header, our headers,
        ``Content-Length`` when there is a body), from a head built once per route."""
        head = self._heads.get((method, path))
        if head is None:
            head = self._heads[(method, path)] = request_head(
                httpx.Request(method, self._url(path), headers=self._headers))
        return with_body(head, content)

    async def _send(self, pool: _Pool, method: str, path: str, content: bytes | None,
                    timeouts: dict[str, float]) -> httpx.Response:
        url = self._url(path)
        if isinstance(pool, httpx.AsyncClient):  # the client's own headers, URL credentials and proxies too
            return await pool.request(method, url, content=content, headers=self._headers,
                                      extensions={"timeout": timeouts})
        request = httpx.Request(method, url, content=content, headers=self._headers, extensions={"timeout": timeouts})
        response = await pool.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response


def _timeouts(read: float, *, connect: float, pool: float) -> dict[str, float]:
    """httpx's ``timeout`` request extension (what ``httpx.Timeout.as_dict()`` gives)."""
    return {"connect": connect, "read": read, "write": read, "pool": pool}

"""``KeepAliveTransport``: pooled HTTP/1.1 keep-alive connections to plain-HTTP origins, as an
``httpx`` transport.

Why not httpx's own transport: the gateway's hop in front of vLLM is one small request and one
small answer on a fast link, so the client's own CPU is most of what the hop adds. Measured per
call to a vLLM on loopback (2-core Intel Xeon, one text, one 64-float vector back): ``httpx.
AsyncClient`` ~0.9-1.3 ms of CPU, its ``AsyncHTTPTransport`` alone (httpcore, h11 and anyio)
~0.8 ms, aiohttp ~0.5 ms, this transport ~0.15-0.3 ms. It parses with ``httptools`` (llhttp, the
parser uvicorn serves with) and writes each request in one piece, so the server wakes once for it.

It stays an ``httpx.AsyncBaseTransport``: the engine builds ``httpx.Request`` objects, reads
``httpx.Response`` objects and sees httpx's exceptions (the transport contract), so the boundary
that maps failures (:mod:`engine_vllm.errors`) and the tests' ``httpx.MockTransport`` work
unchanged.

What it does: at most ``max_connections`` requests in flight (beyond that, waiting up to the pool
timeout: :class:`httpx.PoolTimeout`); idle connections kept for reuse (newest first) until
``keepalive_expiry``; the request's ``timeout`` extension (httpx's: ``connect``, ``read`` for the
whole answer, ``pool``); a connection the server closed while idle is replaced, and a reused one
that it closes before answering is retried once on a fresh connection (the server closed it
between our check and our write; embedding and tokenising have no side effects). What it does
not: TLS, proxies, HTTP/2, streamed bodies, answers without ``Content-Length`` or chunked
encoding (every HTTP/1.1 server we talk to sends one of them). Use httpx's transport for those.
"""

from __future__ import annotations

import asyncio
import time
from typing import cast

import httptools
import httpx

__all__ = ["KeepAliveTransport", "request_head", "with_body"]

#: Before uvicorn's (vLLM's server) own idle timeout of 5 s, so we drop a connection before it does.
_KEEPALIVE_EXPIRY = 4.0

Timeouts = dict[str, float | None]


class _Connection(asyncio.Protocol):
    """One TCP connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        #: the answer allows another request on this connection (read with its headers: the
        #: parser forgets it once the answer is complete)
        self.keep_alive = False
        #: any byte of the current answer arrived (a failure before that may be a stale connection)
        self.received = False
        self.lost = False
        self.idle_since = 0.0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one without subclassing it

    def data_received(self, data: bytes) -> None:
        if self.answer is None or self.answer.done():  # nothing asked: the stream is out of step
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(httpx.RemoteProtocolError("the server closed the connection without a complete answer"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(None)

    # ours
    def send(self, data: bytes) -> asyncio.Future[None]:
        """Write one whole request; the future completes with its answer."""
        assert self.transport is not None
        self.status, self.headers, self.body, self.received, self.keep_alive = 0, [], [], False, False
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.answer

    def reusable(self, now: float) -> bool:
        return not self.lost and self.transport is not None and not self.transport.is_closing() and (
            now - self.idle_since < _KEEPALIVE_EXPIRY
        )

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)


class _Stale(Exception):
    """A reused connection closed before any byte of the answer came back."""


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """See the module docstring. One instance per pool of connections (the engine keeps its health
    probes on another, so they never queue behind embedding calls)."""

    def __init__(self, *, max_connections: int) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"KeepAliveTransport speaks plain http, not {url.scheme!r}", request=request)
        status, headers, body = await self.exchange(
            (url.host, url.port or 80), _serialize(request, await request.aread()),
            request.extensions.get("timeout", {}), request,
        )
        return httpx.Response(status, headers=headers, content=body, request=request,
                              extensions={"http_version": b"HTTP/1.1"})

    async def exchange(
        self, origin: tuple[str, int], data: bytes, timeouts: Timeouts, request: httpx.Request | None = None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One request to ``origin`` (host, port), ``data`` its request line, headers and body in
        one piece; the answer's status, headers and body. Without the ``httpx`` request and response
        objects (for a caller that builds its requests once, :class:`engine_vllm.upstream.UpstreamHTTP`);
        failures are httpx's exceptions all the same (naming ``request`` when given)."""
        if self._closed:
            raise httpx.ConnectError("the transport is closed", request=request)
        await self._acquire(timeouts.get("pool"), request)
        try:
            conn = self._reuse(origin)
            if conn is not None:
                try:
                    return await self._exchange(conn, origin, data, timeouts, request)
                except _Stale:
                    pass  # closed by the server between our check and our write: once more, fresh
            conn = await self._open(origin, timeouts.get("connect"), request)
            try:
                return await self._exchange(conn, origin, data, timeouts, request)
            except _Stale:
                raise httpx.RemoteProtocolError(
                    "the server closed a new connection without answering", request=request
                ) from None
        finally:
            self._slots.release()

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    # ------------------------------------------------------------------ pool

    async def _acquire(self, timeout: float | None, request: httpx.Request | None) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns without suspending
            return
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection in time", request=request) from None

    def _reuse(self, origin: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable(now):
                return conn
            conn.close()
        return None

    async def _open(self, origin: tuple[str, int], timeout: float | None, request: httpx.Request | None) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(_Connection, *origin)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {origin[0]}:{origin[1]} in time", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {origin[0]}:{origin[1]}: {exc}", request=request) from exc
        return conn

    async def _exchange(
        self, conn: _Connection, origin: tuple[str, int], data: bytes, timeouts: Timeouts, request: httpx.Request | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One request on ``conn``; ``conn`` goes back to the pool only after a complete answer."""
        reused = conn.idle_since > 0
        done = False
        try:
            answer = conn.send(data)
            try:
                async with asyncio.timeout(timeouts.get("read")):
                    await answer
            except TimeoutError:
                raise httpx.ReadTimeout("no complete answer in time", request=request) from None
            except httpx.RemoteProtocolError:
                if reused and not conn.received:
                    raise _Stale() from None
                raise
            done = True
        finally:
            if not done:  # failed or cancelled: what is left on the wire is unknown
                conn.close()
        status, headers = conn.status, conn.headers
        body = conn.body[0] if len(conn.body) == 1 else b"".join(conn.body)
        if conn.keep_alive and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(origin, []).append(conn)
        else:
            conn.close()
        return status, headers, body


def request_head(request: httpx.Request) -> bytes:
    """``request``'s request line and headers as httpx made them (its Host, the caller's own), less
    ``Content-Length`` and the blank line that ends the head: a head built once, each request then
    written by :func:`with_body`."""
    parts = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        if name.lower() != b"content-length":
            parts += (name, b": ", value, b"\r\n")
    return b"".join(parts)


def with_body(head: bytes, content: bytes | None) -> bytes:
    """One request in one piece: ``head`` (:func:`request_head`), its ``Content-Length`` and the
    body (``None``: no body and no length, as a GET goes)."""
    if content is None:
        return head + b"\r\n"
    return b"".join((head, b"Content-Length: ", str(len(content)).encode("ascii"), b"\r\n\r\n", content))


def _serialize(request: httpx.Request, body: bytes) -> bytes:
    """The request as httpx built it (its Host, and its Content-Length when it has one), in one piece."""
    if "content-length" in request.headers:
        return with_body(request_head(request), body)
    return request_head(request) + b"\r\n" + body

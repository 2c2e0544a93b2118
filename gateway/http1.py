"""The HTTP/1.1 protocol the gateway serves with: uvicorn's httptools protocol, each response sent
in one write.

uvicorn writes a response's head (status line and headers) as soon as the application starts the
response, and its body in a second write. On loopback and on a VM each write that reaches a
sleeping client wakes it: with two writes the client wakes for the head, finds no body, sleeps and
is woken again. Here the head waits for the response's first body write (the same loop turn, for
every response the gateway builds) and both leave in one system call; a head with no body yet leaves
on the next turn of the loop at the latest, so a streamed or empty response is never held back.
``100 Continue`` and anything that is not a response head are written at once.

It also tells the application when a client leaves, without a task per request: each request's
scope carries a :class:`DisconnectWatch` (under the ASGI extension :data:`DISCONNECT_EXTENSION`)
whose callbacks run when the connection is lost before that request's response is complete. The
portable way, a task that waits on ``receive()`` for ``http.disconnect``, costs a task, two more
turns of the event loop and its cancellation on every request; :mod:`gateway.api.disconnect` uses
the watch when the server offers it and that task otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["DISCONNECT_EXTENSION", "DisconnectWatch", "HeadWithBodyTransport", "OneWriteHttpToolsProtocol"]

#: the scope's ``extensions`` key of a request's :class:`DisconnectWatch`
DISCONNECT_EXTENSION = "embed_gateway.disconnect"

_HEAD = b"HTTP/1.1 "
_CONTINUE = b"HTTP/1.1 100 "


class HeadWithBodyTransport:
    """A transport that holds a response head until the body's first write (or the next loop turn)
    and writes both at once; everything else is the wrapped transport's."""

    __slots__ = ("_transport", "_loop", "_head")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.writelines((head, data))  # one system call, the body not copied
            return
        if bytes(data[:9]) == _HEAD and bytes(data[:13]) != _CONTINUE:
            self._head = bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        """Write a held head now (its body did not follow in the same loop turn)."""
        head = self._head
        if head is not None:
            self._head = None
            if not self._transport.is_closing():
                self._transport.write(head)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:  # the rest of the transport's interface, unchanged
        return getattr(self._transport, name)


class DisconnectWatch:
    """One request's client: ``lost`` once its connection closed before the response was complete,
    and the callbacks to run then (each once, in the order added)."""

    __slots__ = ("_callbacks", "lost")

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []
        self.lost = False

    def add(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def discard(self, callback: Callable[[], None]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def fire(self) -> None:
        self.lost = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`HeadWithBodyTransport`, each request's scope
    with a :class:`DisconnectWatch`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        wrapped = HeadWithBodyTransport(transport, self.loop)  # type: ignore[arg-type]
        super().connection_made(wrapped)  # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        # the scope is the request's own dict; its task starts on a later loop turn, so the watch
        # is in place before the application sees the scope
        self.scope.setdefault("extensions", {})[DISCONNECT_EXTENSION] = DisconnectWatch()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and cycle.disconnected:  # lost before its response was complete
            watch = cycle.scope.get("extensions", {}).get(DISCONNECT_EXTENSION)
            if isinstance(watch, DisconnectWatch):
                watch.fire()

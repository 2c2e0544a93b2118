"""The HTTP/1.1 protocol the gateway serves with: uvicorn's httptools protocol, each response sent
in one write.

uvicorn writes a response's head (status line and headers) as soon as the application starts the
response, and its body in a second write. On loopback and on a VM each write that reaches a
sleeping client wakes it: with two writes the client wakes for the head, finds no body, sleeps and
is woken again. Here the head waits for the response's first body write (the same loop turn, for
every response the gateway builds) and both leave in one system call; a head with no body yet leaves
on the next turn of the loop at the latest, so a streamed or empty response is never held back.
``100 Continue`` and anything that is not a response head are written at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HeadWithBodyTransport", "OneWriteHttpToolsProtocol"]

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


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`HeadWithBodyTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        wrapped = HeadWithBodyTransport(transport, self.loop)  # type: ignore[arg-type]
        super().connection_made(wrapped)  # type: ignore[arg-type]

"""The gateway's HTTP/1.1 protocol (uvicorn's httptools protocol) sends a response's head and body
in one write; a head whose body is late still leaves on the next loop turn; ``100 Continue`` goes
at once; a client that leaves cancels its request's work through the scope's watch (and through a
watcher task under servers without one). Driven through the real protocol class with a transport
that records its writes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.server import ServerState

from gateway.api.disconnect import ClientDisconnected, cancel_on_disconnect
from gateway.http1 import DISCONNECT_EXTENSION, DisconnectWatch, HeadWithBodyTransport, OneWriteHttpToolsProtocol
from gateway.lifecycle import GatewayServer


class Recording(asyncio.Transport):
    """A transport that keeps what is written, with the timestamps of each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _json(_: Request) -> Response:
    return JSONResponse({"data": [1, 2, 3]})


async def _late(_: Request) -> Response:
    async def body():  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.05)
        yield b"late"

    return StreamingResponse(body(), media_type="text/plain")


async def _echo(request: Request) -> Response:
    return Response(await request.body())


APP = Starlette(routes=[Route("/json", _json), Route("/late", _late), Route("/echo", _echo, methods=["POST"])])


def _connect() -> tuple[Any, Recording]:
    """The gateway's protocol serving :data:`APP` on a new connection (in the running loop)."""
    config = uvicorn.Config(APP, http=OneWriteHttpToolsProtocol, log_config=None, lifespan="off")
    config.load()
    proto = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = Recording()
    proto.connection_made(transport)
    return proto, transport


def _serve(raw: bytes, *, wait: float = 0.0) -> tuple[list[bytes], list[bytes]]:
    """Feed ``raw`` to the gateway's protocol; the writes after the first loop turns, and all."""

    async def go() -> tuple[list[bytes], list[bytes]]:
        proto, transport = _connect()
        proto.data_received(raw)
        await asyncio.sleep(wait)
        early = list(transport.writes)
        await asyncio.sleep(0.2)
        return early, transport.writes

    return asyncio.run(go())


def test_the_gateway_serves_with_it() -> None:
    config = GatewayServer.make_config(APP, host="127.0.0.1", port=0, log_level="warning", grace=1.0)
    config.load()
    assert config.http_protocol_class is OneWriteHttpToolsProtocol


def test_head_and_body_leave_in_one_write() -> None:
    _, writes = _serve(b"GET /json HTTP/1.1\r\nhost: x\r\n\r\n")
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b'{"data":[1,2,3]}')


def test_every_response_of_a_keep_alive_connection_is_one_write() -> None:
    request = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello"
    _, writes = _serve(request + request.replace(b"hello", b"world"))
    assert len(writes) == 2
    assert writes[0].endswith(b"hello") and writes[1].endswith(b"world")
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") for w in writes)


def test_a_head_whose_body_is_late_is_not_held_for_it() -> None:
    early, writes = _serve(b"GET /late HTTP/1.1\r\nhost: x\r\n\r\n", wait=0.02)
    assert len(early) == 1 and early[0].startswith(b"HTTP/1.1 200 OK\r\n") and early[0].endswith(b"\r\n\r\n")
    assert b"late" in b"".join(writes[1:])


def test_100_continue_is_written_at_once() -> None:
    raw = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n"

    async def go() -> list[bytes]:
        proto, transport = _connect()
        proto.data_received(raw)
        await asyncio.sleep(0.05)
        assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
        proto.data_received(b"hello")
        await asyncio.sleep(0.05)
        return transport.writes

    writes = asyncio.run(go())
    assert len(writes) == 2 and writes[1].startswith(b"HTTP/1.1 200 OK") and writes[1].endswith(b"hello")


def test_close_and_eof_send_a_held_head_first() -> None:
    async def go() -> None:
        inner = Recording()
        t = HeadWithBodyTransport(inner, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        assert inner.writes == []
        t.close()
        assert inner.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"] and inner.closing
        t.write(b"not a head")  # anything else goes straight through
        assert inner.writes[-1] == b"not a head"
        assert t.get_extra_info("peername") == ("127.0.0.1", 50000)  # the rest is the transport's

    asyncio.run(go())


# --------------------------------------------------------------------------- the client's leaving


def _slow_app(seen: list[str]) -> Starlette:
    """An app whose one route waits (as engine work does) under ``cancel_on_disconnect``."""

    async def slow(request: Request) -> Response:
        async def work() -> str:
            await asyncio.sleep(30)
            return "done"

        try:
            return Response(await cancel_on_disconnect(request, work()))
        except ClientDisconnected:
            seen.append("disconnected")
            raise
        finally:
            seen.append("watch" if DISCONNECT_EXTENSION in request.scope.get("extensions", {}) else "no watch")

    return Starlette(routes=[Route("/slow", slow)])


def test_a_client_that_leaves_cancels_its_work_through_the_servers_watch() -> None:
    seen: list[str] = []

    async def go() -> None:
        config = uvicorn.Config(_slow_app(seen), http=OneWriteHttpToolsProtocol, log_config=None, lifespan="off")
        config.load()
        proto = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
        proto.connection_made(Recording())
        proto.data_received(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        await asyncio.sleep(0.05)
        assert all(t.get_coro().__name__ != "watch" for t in asyncio.all_tasks())  # no watcher task
        proto.connection_lost(None)
        await asyncio.sleep(0.05)

    asyncio.run(go())
    assert seen == ["disconnected", "watch"]


def test_a_watch_fires_once_and_not_after_the_response() -> None:
    watch, fired = DisconnectWatch(), []
    watch.add(lambda: fired.append(1))
    removed = lambda: fired.append(2)  # noqa: E731
    watch.add(removed)
    watch.discard(removed)
    watch.fire()
    watch.fire()
    assert fired == [1] and watch.lost

    async def go() -> bool:  # the protocol: a connection lost after a complete response fires nothing
        proto, _ = _connect()
        proto.data_received(b"GET /json HTTP/1.1\r\nhost: x\r\n\r\n")
        await asyncio.sleep(0.05)
        watch = proto.cycle.scope["extensions"][DISCONNECT_EXTENSION]
        watch.add(lambda: fired.append(3))
        proto.connection_lost(None)
        return bool(watch.lost)

    assert asyncio.run(go()) is False and fired == [1]


def test_without_the_servers_watch_a_task_watches_receive() -> None:
    """Under another ASGI server (no watch in the scope) the client's ``http.disconnect`` cancels the work."""
    seen: list[str] = []
    app = _slow_app(seen)

    async def go() -> None:
        left = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if not left.is_set():
                left.set()
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.sleep(0.05)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            pass

        scope = {"type": "http", "method": "GET", "path": "/slow", "raw_path": b"/slow", "root_path": "",
                 "query_string": b"", "headers": [], "http_version": "1.1", "scheme": "http",
                 "server": ("x", 80), "client": ("y", 1)}
        with contextlib.suppress(ClientDisconnected):
            await asyncio.wait_for(app(scope, receive, send), 5)

    asyncio.run(go())
    assert seen == ["disconnected", "no watch"]

"""``KeepAliveTransport`` against real servers on loopback sockets.

The well-behaved server is uvicorn, the server vLLM runs on, with a small ASGI app; the faults a
real server does not make on demand (closing a kept-alive connection just as the next request
arrives, a malformed answer, a silent peer) come from scripted asyncio socket servers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import h11
import httpx
import pytest
import uvicorn

from engine_vllm.transport import KeepAliveTransport
from engine_vllm.upstream import UpstreamHTTP, direct
from gateway.contract import EngineOverloadedError
from tests.support.server import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Any) -> None:
    """``/echo`` answers the body it got and the client's port; ``/slow`` after 1 s; ``/chunked``
    in three chunks; ``/close`` with ``Connection: close``."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
    if path == "/slow":
        await asyncio.sleep(1.0)
    if path == "/close":
        headers.append((b"connection", b"close"))
    payload = json.dumps({"port": scope["client"][1], "body": body.decode(), "method": scope["method"]}).encode()
    if path == "/chunked":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for part in (payload[:5], payload[5:10], payload[10:]):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 201 if path == "/created" else 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


@asynccontextmanager
async def uvicorn_server() -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def socket_server(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def post(t: KeepAliveTransport, url: str, body: bytes = b"{}", timeout: dict[str, float] | None = None) -> httpx.Response:
    request = httpx.Request("POST", url, content=body, headers={"content-type": "application/json"},
                            extensions={"timeout": timeout or {}})
    return await t.handle_async_request(request)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_answers_are_parsed_and_one_connection_is_kept_alive() -> None:
    async def go() -> None:
        async with uvicorn_server() as base:
            t = KeepAliveTransport(max_connections=4)
            first = await post(t, base + "/echo", b'{"input": ["a"]}')
            second = await post(t, base + "/echo", b'{"input": ["b"]}')
            created = await post(t, base + "/created")
            chunked = await post(t, base + "/chunked", b"x" * 70_000)
            await t.aclose()
        assert first.status_code == 200 and first.json()["body"] == '{"input": ["a"]}'
        assert second.json()["port"] == first.json()["port"]  # the same connection, reused
        assert created.status_code == 201
        assert chunked.json()["body"] == "x" * 70_000 and chunked.json()["port"] == first.json()["port"]
        assert first.headers["content-type"] == "application/json" and first.request.url.path == "/echo"

    run(go())


def test_a_closing_answer_and_a_failed_call_do_not_leave_their_connection_in_the_pool() -> None:
    async def go() -> None:
        async with uvicorn_server() as base:
            t = KeepAliveTransport(max_connections=4)
            closing = (await post(t, base + "/close")).json()["port"]
            after = (await post(t, base + "/echo")).json()["port"]
            with pytest.raises(httpx.ReadTimeout):
                await post(t, base + "/slow", timeout={"read": 0.2})
            fresh = (await post(t, base + "/echo")).json()["port"]
            await t.aclose()
        assert after != closing  # the server said close
        assert fresh not in (closing, after)  # /slow went on `after`'s connection: dropped with the timeout

    run(go())


def test_the_pool_bounds_requests_in_flight() -> None:
    async def go() -> None:
        async with uvicorn_server() as base:
            t = KeepAliveTransport(max_connections=1)
            slow = asyncio.create_task(post(t, base + "/slow"))
            await asyncio.sleep(0.2)
            with pytest.raises(httpx.PoolTimeout):
                await post(t, base + "/echo", timeout={"pool": 0.1})
            assert (await slow).status_code == 200
            assert (await post(t, base + "/echo", timeout={"pool": 0.1})).status_code == 200  # the slot is back
            await t.aclose()

    run(go())


def test_a_cancelled_call_frees_its_slot_and_closes_its_connection() -> None:
    async def go() -> None:
        async with uvicorn_server() as base:
            t = KeepAliveTransport(max_connections=1)
            before = (await post(t, base + "/echo")).json()["port"]
            slow = asyncio.create_task(post(t, base + "/slow"))
            await asyncio.sleep(0.2)
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
            after = (await post(t, base + "/echo", timeout={"pool": 0.5})).json()["port"]
            await t.aclose()
        assert after != before  # half a conversation is never reused

    run(go())


def test_connection_refused_is_a_connect_error() -> None:
    async def go() -> None:
        t = KeepAliveTransport(max_connections=1)
        with pytest.raises(httpx.ConnectError):
            await post(t, f"http://127.0.0.1:{free_port()}/echo")

    run(go())


def _answer(body: bytes = b"{}") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return head + await reader.readexactly(length)


def test_a_kept_connection_the_server_drops_unanswered_is_retried_once_on_a_new_one() -> None:
    seen: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("peername")[1])
        await _read_request(reader)
        writer.write(_answer(b'{"n": 1}'))
        await writer.drain()
        if len(seen) == 1:  # the first connection: read the next request, then hang up without a word
            await _read_request(reader)
        writer.close()

    async def go() -> None:
        async with socket_server(handler) as base:
            t = KeepAliveTransport(max_connections=1)
            assert (await post(t, base + "/x")).json() == {"n": 1}
            assert (await post(t, base + "/x")).json() == {"n": 1}
            await t.aclose()
        assert len(seen) == 2

    run(go())


def test_a_new_connection_dropped_unanswered_and_a_malformed_answer_are_protocol_errors() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.close()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 two hundred\r\n\r\n")
        await writer.drain()

    async def go() -> None:
        for handler in (hang_up, garbage):
            async with socket_server(handler) as base:
                t = KeepAliveTransport(max_connections=1)
                with pytest.raises(httpx.RemoteProtocolError):
                    await post(t, base + "/x", timeout={"read": 5})
                await t.aclose()

    run(go())


def test_the_request_goes_out_as_http11_with_host_and_length() -> None:
    reads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reads.append(await _read_request(reader))
        writer.write(_answer())
        await writer.drain()
        writer.close()

    async def go() -> None:
        async with socket_server(handler) as base:
            t = KeepAliveTransport(max_connections=1)
            await post(t, base + "/v1/embeddings", b'{"input": ["a fact"]}')
            await t.aclose()

    run(go())
    head, _, body = reads[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/embeddings HTTP/1.1\r\n") and body == b'{"input": ["a fact"]}'
    assert b"Content-Length: 21" in head and b"Host: 127.0.0.1" in head


def test_upstream_goes_direct_only_to_plain_http_without_credentials_or_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    assert direct(httpx.URL("http://127.0.0.1:8000"))
    assert not direct(httpx.URL("https://api.example.com/v1"))
    assert not direct(httpx.URL("http://user:secret@vllm.internal:8000"))
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    assert not direct(httpx.URL("http://vllm.internal:8000"))
    monkeypatch.setenv("NO_PROXY", "vllm.internal")
    assert direct(httpx.URL("http://vllm.internal:8000"))

    kw: dict[str, Any] = {"engine": "t", "peer": "vLLM", "connect_timeout": 1.0, "read_timeout": 1.0,
                          "health_timeout": 1.0, "max_connections": 2}

    async def go() -> tuple[type, type]:
        plain, tls = UpstreamHTTP("http://vllm.internal:8000", **kw), UpstreamHTTP("https://vllm.example", **kw)
        plain.open()
        tls.open()
        kinds = type(plain._pool), type(tls._pool)
        await plain.aclose()
        await tls.aclose()
        return kinds

    assert run(go()) == (KeepAliveTransport, httpx.AsyncClient)
    with pytest.raises(httpx.UnsupportedProtocol):
        run(KeepAliveTransport(max_connections=1).handle_async_request(httpx.Request("GET", "https://vllm.example/")))


def test_upstream_calls_a_real_server_through_it() -> None:
    async def go() -> tuple[Any, int]:
        async with uvicorn_server() as base:
            up = UpstreamHTTP(base, engine="t", peer="vLLM", headers={"authorization": "Bearer k"}, connect_timeout=1.0,
                              read_timeout=5.0, health_timeout=1.0, max_connections=2)
            up.open()
            answer = await up.call("POST", "/echo", {"input": ["a fact"]}, None)
            status = (await up.probe("/created")).status_code
            await up.aclose()
            return answer, status

    answer, status = run(go())
    assert json.loads(answer["body"]) == {"input": ["a fact"]} and answer["method"] == "POST" and status == 201


def _httpx_wire(request: httpx.Request) -> bytes:
    """The bytes httpx's own HTTP/1.1 stack puts on the wire for ``request`` (httpcore writes
    them with h11)."""
    conn = h11.Connection(h11.CLIENT)
    data = conn.send(h11.Request(method=request.method, target=request.url.raw_path, headers=list(request.headers.raw)))
    body = request.read()
    return data + (conn.send(h11.Data(data=body)) if body else b"")


def test_upstream_writes_the_request_httpx_would_send_and_maps_an_error_answer() -> None:
    """The direct path writes a call from a head built once per route: the same request line,
    headers (in any order) and body as httpx's request for it; a non-2xx answer still goes through
    the error mapping (an overloaded vLLM: 429 with its Retry-After)."""
    reads: list[bytes] = []
    answers = [_answer(b'{"data": [1]}'), _answer(b'{"data": [2]}'),
               b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 3\r\ncontent-type: application/json\r\n"
               b"content-length: 20\r\n\r\n" + b'{"message": "busy!"}']

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while answers:
            head = await reader.readuntil(b"\r\n\r\n")
            lengths = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
            reads.append(head + (await reader.readexactly(lengths[0]) if lengths else b""))
            writer.write(answers.pop(0))
            await writer.drain()
        writer.close()

    async def go() -> tuple[Any, Any, BaseException | None, str]:
        async with socket_server(handler) as base:
            up = UpstreamHTTP(base, engine="t", peer="vLLM", headers={"authorization": "Bearer k"}, connect_timeout=1.0,
                              read_timeout=5.0, health_timeout=1.0, max_connections=1)
            up.open()
            first = await up.call("POST", "/v1/embeddings", {"input": ["a fact"]}, None)
            second = await up.call("GET", "/v1/models", None, None)
            try:
                await up.call("POST", "/v1/embeddings", {"input": ["b"]}, None)
                err = None
            except EngineOverloadedError as exc:
                err = exc
            await up.aclose()
            return first, second, err, base

    first, second, err, base = run(go())
    assert first == {"data": [1]} and second == {"data": [2]}
    assert isinstance(err, EngineOverloadedError) and err.retry_after == 3.0
    headers = {"content-type": "application/json", "accept": "application/json", "authorization": "Bearer k"}
    for raw, (method, path, body) in zip(reads, [("POST", "/v1/embeddings", b'{"input":["a fact"]}'),
                                                 ("GET", "/v1/models", None), ("POST", "/v1/embeddings", b'{"input":["b"]}')],
                                         strict=True):
        want = _httpx_wire(httpx.Request(method, base + path, content=body, headers=headers))
        (line, *lines), (got_line, *got_lines) = (x.partition(b"\r\n\r\n")[0].split(b"\r\n") for x in (want, raw))
        assert got_line == line and sorted(got_lines) == sorted(lines) and raw.endswith(want.partition(b"\r\n\r\n")[2])

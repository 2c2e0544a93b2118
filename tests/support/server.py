"""Run the real FastAPI app over real HTTP (uvicorn on a loopback port, in a thread).

The server is the gateway's own :class:`~gateway.lifecycle.GatewayServer`, so ``stop()`` goes
through the same drain as SIGTERM does (``handle_exit`` is what the signal handler calls).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from gateway.app import create_app
from gateway.config import Settings
from gateway.contract import Engine
from gateway.lifecycle import GatewayServer

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, settings: Settings, engines: Mapping[str, Engine] | None = None, **app_kwargs: Any) -> None:
        self.port = free_port()
        self.app = create_app(settings, engines, **app_kwargs)
        config = GatewayServer.make_config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", grace=settings.server.shutdown_grace
        )
        self.server = GatewayServer(config, self.app.state.shutdown)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve())
        except BaseException as exc:  # start-up failures are reported by start()
            self.error = exc

    def start(self, timeout: float = 60) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"server exited during start-up: {self.error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.02)
        return self

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run a coroutine on the server's event loop (where its engines live) and wait for it."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def sigterm(self) -> None:
        """What SIGTERM does to `embed-gateway serve` (uvicorn's signal handler calls handle_exit)."""
        self.server.handle_exit(signal.SIGTERM, None)

    def stop(self, timeout: float = 30) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=timeout)


@contextmanager
def live_server(settings: Settings, engines: Mapping[str, Engine] | None = None, **app_kwargs: Any) -> Iterator[LiveServer]:
    server = LiveServer(settings, engines, **app_kwargs).start()
    try:
        yield server
    finally:
        server.stop()

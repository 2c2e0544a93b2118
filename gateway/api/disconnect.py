"""Cancel a request's work when its client goes away.

Starlette does not cancel a handler when the client disconnects; the work would run to the end
(and hold a queue slot) for nobody. :func:`cancel_on_disconnect` runs the work in the request's
own task beside a watcher of the ASGI ``http.disconnect`` message; if the client leaves first,
the work is cancelled, and engines withdraw its queued sequences (their cancellation contract).

How the client's leaving is seen: served by the gateway's own HTTP protocol
(:mod:`gateway.http1`), the request's scope carries a watch whose callback the server runs when
the connection is lost: no task, nothing per request but a callback added and removed. Under any
other ASGI server, a watcher task waits on ``receive()`` for ``http.disconnect`` (one extra task
per request, not two: the work is not a task of its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

from starlette.requests import Request

from gateway.http1 import DISCONNECT_EXTENSION, DisconnectWatch

__all__ = ["ClientDisconnected", "cancel_on_disconnect"]

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client closed the connection before the response was ready."""


async def _call_when_gone(request: Request, leave: Callable[[], None]) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            leave()
            return


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    task = asyncio.current_task()
    assert task is not None
    working, gone = True, False

    def leave() -> None:
        nonlocal gone
        if working:
            gone = True
            task.cancel()

    disarm: Callable[[], object]
    server_watch = request.scope.get("extensions", {}).get(DISCONNECT_EXTENSION)
    if isinstance(server_watch, DisconnectWatch):  # the gateway's own HTTP protocol: no task
        if server_watch.lost:
            work.close()
            raise ClientDisconnected()
        server_watch.add(leave)
        disarm = partial(server_watch.discard, leave)
    else:
        disarm = asyncio.ensure_future(_call_when_gone(request, leave)).cancel
    try:
        return await work
    except asyncio.CancelledError:
        if gone and task.uncancel() == 0:  # our cancellation, and no one else's
            raise ClientDisconnected() from None
        raise
    finally:
        working = False
        disarm()

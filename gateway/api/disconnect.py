"""Cancel a request's work when its client goes away.

Starlette does not cancel a handler when the client disconnects; the work would run to the end
(and hold a queue slot) for nobody. :func:`cancel_on_disconnect` runs the work in the request's
own task beside a watcher of the ASGI ``http.disconnect`` message; if the client leaves first,
the watcher cancels the work, and engines withdraw its queued sequences (their cancellation
contract). One extra task per request, not two: the work is not a task of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

__all__ = ["ClientDisconnected", "cancel_on_disconnect"]

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client closed the connection before the response was ready."""


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    task = asyncio.current_task()
    assert task is not None
    working, gone = True, False

    async def watch() -> None:
        nonlocal gone
        await _wait_for_disconnect(request)
        if working:
            gone = True
            task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone and task.uncancel() == 0:  # the watcher's cancellation, and no one else's
            raise ClientDisconnected() from None
        raise
    finally:
        working = False
        watcher.cancel()

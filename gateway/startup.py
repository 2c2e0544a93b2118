"""A start-up that fails for a reason the gateway can name ends in one clear line, not a traceback.

Starlette reports a lifespan that raised by sending the formatted traceback as the
``lifespan.startup.failed`` message, and uvicorn logs that message as an error: for "the model
path does not exist" an operator got a screen of framework frames after the actual reason. For a
:class:`StartupError` (no engine enabled, no engine could start) or a route no engine can serve,
the reason is the whole story: the lifespan records it on ``app.state.startup_error``,
:class:`QuietStartupFailure` empties that message, and ``embed-gateway serve`` ends with the reason
on one line and exit status 3 (uvicorn's start-up failure). So does a ``RuntimeError`` raised while
an engine is built (its missing dependencies: the message names the extra), which
:meth:`gateway.pool.Pool.open` turns into a :class:`StartupError`. Any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["QuietStartupFailure", "StartupError"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class StartupError(RuntimeError):
    """The gateway cannot start, for the reason in the message (logged above it in detail)."""


class QuietStartupFailure:
    """ASGI middleware: a start-up failure the lifespan recorded is reported without a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def quiet(message: Message) -> None:
            known = getattr(getattr(scope.get("app"), "state", None), "startup_error", None)
            if message["type"] == "lifespan.startup.failed" and known is not None:
                message = {**message, "message": ""}  # uvicorn logs a non-empty message as an error
            await send(message)

        await self.app(scope, receive, quiet)

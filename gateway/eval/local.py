"""``eval --config CFG``: the gateway of a configuration file, served in this process for one run.

Why a real server on a loopback port rather than calling the service directly: eval then measures
exactly what clients will get (the same aliases, model list, limits, post-processing and headers),
through the same code path as ``--url``, with nothing to start by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

__all__ = ["serve_config"]


@asynccontextmanager
async def serve_config(config_file: Path, *, start_timeout: float = 600.0) -> AsyncIterator[str]:
    """Start the gateway of ``config_file`` on 127.0.0.1 (a free port) and yield its base URL."""
    from gateway.app import create_app
    from gateway.config import load_settings
    from gateway.lifecycle import GatewayServer

    settings = load_settings(str(config_file))
    app = create_app(settings)
    config = GatewayServer.make_config(app, host="127.0.0.1", port=0, log_level="warning",
                                       grace=settings.server.shutdown_grace)
    server = GatewayServer(config, app.state.shutdown)
    task = asyncio.create_task(server.serve(), name="eval-gateway")
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + start_timeout
        while not server.started:
            if task.done() or loop.time() > deadline:
                reason = getattr(app.state, "startup_error", None) or "it did not start in time"
                raise RuntimeError(f"the gateway of {config_file} could not start: {reason}")
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        if task.done():
            task.exception()  # reported above; retrieved so asyncio does not log it again
        else:
            await asyncio.wait_for(task, timeout=settings.server.shutdown_grace + 30)

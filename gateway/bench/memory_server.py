"""The gateway exactly as ``embed-gateway serve`` runs it, plus ``GET /bench/memory``.

The models bench needs each engine's memory and the process's. Engines report the bytes of their
loaded weights in ``EngineCapabilities.resident_bytes``, but the gateway publishes them on no
route yet, and the ``hf`` (jina-embeddings-v3) engine does not fill them in. So the bench starts
the gateway through this module, which adds one read-only route that asks the live engines in
process: their own figure where they report one (``"source": "reported"``), else the bytes of the
torch modules they hold, each tensor storage once (``"counted"``). A bench tool, not a runtime
module: nothing here is part of the served API.

    python -m gateway.bench.memory_server [--config FILE] [--host H] [--port P]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

__all__ = ["counted_bytes", "engine_memory", "main", "process_memory"]



def counted_bytes(obj: object, depth: int = 2) -> int:
    """Bytes of the parameters and buffers of every torch module reachable from ``obj``'s
    attributes (``depth`` levels deep), each storage counted once (tied weights are one tensor)."""
    import torch

    seen: set[int] = set()
    storages: dict[int, int] = {}

    def visit(o: object, level: int) -> None:
        if id(o) in seen:
            return
        seen.add(id(o))
        if isinstance(o, torch.nn.Module):
            for t in (*o.parameters(), *o.buffers()):
                st = t.untyped_storage()
                storages[st.data_ptr()] = st.nbytes()
            return
        if level == 0:
            return
        for value in getattr(o, "__dict__", {}).values():
            visit(value, level - 1)

    visit(obj, depth)
    return sum(storages.values())


def engine_memory(engine: Any) -> dict[str, Any]:
    """One engine's resident bytes: its own report, else counted from the modules it holds."""
    reported = engine.capabilities.resident_bytes
    if reported is not None:
        return {"resident_bytes": int(reported), "source": "reported"}
    return {"resident_bytes": counted_bytes(engine), "source": "counted"}


#: /proc/PID/status keys -> ours. ``RssFile`` is memory-mapped files: weights torch maps from a
#: safetensors file of the same dtype stay file pages, resident only where touched
_STATUS = {"VmRSS": "rss_mib", "VmHWM": "peak_rss_mib", "RssAnon": "rss_anon_mib", "RssFile": "rss_file_mib"}


def process_memory(pid: int | None = None) -> dict[str, float]:
    """This process's resident set now, at its peak, and now split into anonymous and file-backed, MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in _STATUS:
            out[_STATUS[key]] = round(int(value.split()[0]) / 1024, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    from gateway.app import create_app
    from gateway.cli import serve_settings
    from gateway.lifecycle import GatewayServer
    from gateway.obs.logs import configure_logging

    ap = argparse.ArgumentParser(prog="python -m gateway.bench.memory_server", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config")
    ap.add_argument("--host")
    ap.add_argument("--port", type=int)
    args = ap.parse_args(argv)
    args.ray, args.ray_address = False, None
    config_file = args.config or os.environ.get("EMBED_GATEWAY_CONFIG")
    settings = serve_settings(args, config_file)
    configure_logging(settings.server)
    app = create_app(settings)

    @app.get("/bench/memory", include_in_schema=False)
    async def memory() -> dict[str, Any]:
        snap = app.state.pool.current
        return {
            "engines": {n: {"model": m.model, **engine_memory(m.engine)} for n, m in snap.members.items()},
            "process": process_memory(),
        }

    s = settings.server
    config = GatewayServer.make_config(app, host=s.host, port=s.port, log_level=s.log_level, grace=s.shutdown_grace,
                                       keep_alive=s.keep_alive)
    GatewayServer(config, app.state.shutdown, freeze=True).run()  # as embed-gateway serve runs
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

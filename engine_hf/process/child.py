"""The passes' side: one in-process kind's weights, running the batches the gateway sends.

Started by :class:`~engine_hf.process.PassProcess` from a fork server that has imported this
module and the kinds (with them torch and transformers) once, so a start or a restart pays for
loading the weights, not for the imports. It loads the kind (front and weights), sets its threads,
warms up, freezes what the imports and loading built (collections need not walk it) and says ``("ready", (bytes of
weights, placement))`` or ``("failed", RemoteError)``. Then, per ``("forward", payloads)``: ``("ok", results)``
or ``("err", RemoteError)``. Its log records go the same way as ``("log", fields)``, for the
gateway's own handlers. It ignores SIGINT and SIGTERM: the gateway decides when it ends (it drains
first), and it ends when the gateway's end of the pipe closes, the gateway gone included.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

from engine_hf.remote_errors import pack_error
from gateway.contract import EmbedGatewayError, EngineError

__all__ = ["main"]

log = logging.getLogger(__name__)


def main(conn: Connection, build: Any, name: str, env: dict[str, str], log_level: int) -> None:
    """The process's entry point (``build()``: the kind, as the gateway's side made it; ``env``: the
    gateway's environment now, which the fork server, started earlier, may not have had)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(env)
    lock = threading.Lock()

    def send(message: Any) -> None:
        with lock:  # log records may come from other threads (torch's, a library's)
            conn.send(message)

    root = logging.getLogger()
    root.handlers[:] = [_Logs(send, name)]
    root.setLevel(log_level)
    engine = build()
    try:
        engine._load()
        engine._warm_up()
    except Exception as exc:  # the gateway raises it as the engine's start failure, and logs why
        send(("failed", pack_error(_contract_error(exc, name))))
        return
    # no collection first: over the imports it takes longer than the load (0.2 s); what loading left
    # in cycles is small
    gc.freeze()
    send(("ready", (engine._resident, engine._placement)))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply: Any = ("ok", engine._guarded_forward(message[1]))
        except EmbedGatewayError as exc:
            reply = ("err", pack_error(exc))
        except Exception as exc:
            log.exception("forward pass failed on %s (%d sequences)", name, len(message[1]))
            reply = ("err", pack_error(EngineError(f"forward pass failed: {type(exc).__name__}", engine=name)))
        try:
            send(reply)
        except (BrokenPipeError, OSError):
            return


class _Logs(logging.Handler):
    """This process's log records, for the gateway's handlers (JSON lines or text, as
    ``server.log_format`` says), under the same logger names, marked ``engine_process``."""

    def __init__(self, send: Any, name: str) -> None:
        super().__init__()
        self._send, self._name = send, name

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # the gateway's formatters print ``fields`` as JSON keys or key=value
            extra = getattr(record, "fields", None)
            shown = {**(extra if isinstance(extra, dict) else {}), "engine_process": self._name}
            if record.exc_info:
                shown["exc"] = logging.Formatter().formatException(record.exc_info)
            attrs = dict(record.__dict__)
            attrs.update(msg=record.getMessage(), args=None, exc_info=None, exc_text=None, fields=shown)
            self._send(("log", attrs))
        except Exception:
            self.handleError(record)


def _contract_error(exc: BaseException, name: str) -> EmbedGatewayError:
    if isinstance(exc, EmbedGatewayError):
        return exc
    return EngineError(f"{type(exc).__name__}: {exc}", engine=name)

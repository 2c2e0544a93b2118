"""``PassProcess``: the gateway's side of an engine's passes' process.

:meth:`PassProcess.forward` is what the scheduler's worker thread calls for each batch: it sends
the payloads and blocks on the answer, holding no interpreter lock while the pass runs. The kind's
errors come back as the same classes (:mod:`engine_hf.remote_errors`). If the process dies, the
batch on it fails as retryable ("unavailable": another engine of the route takes it, or the client
gets a 503 with Retry-After), so does every batch until a new process is up, and :attr:`problem`
says so for health and readiness; a new process is started after a growing pause until one loads.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from engine_hf.remote_errors import RemoteError, unpack_error
from gateway.contract import EngineError, EngineUnavailableError

__all__ = ["PRELOAD", "RESTART_PAUSES", "PassProcess"]

log = logging.getLogger(__name__)

#: seconds before each try to start a new process after one died (the last one repeats)
RESTART_PAUSES = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
#: how long closing waits for the process to exit before killing it
CLOSE_TIMEOUT_S = 30.0

#: what the fork server imports once, for every process it starts: the passes' side and the kinds
#: (torch and transformers with them)
PRELOAD = ["engine_hf.process.child", "engine_hf.engine", "engine_hf.st.engine", "engine_hf.bge_m3.engine"]


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


class PassProcess:
    """The forward passes of engine ``name`` in a process of their own: ``build()`` (picklable) makes
    the kind there, and what it loads must compute where ``placement`` says (the device, dtype and
    kernels the gateway's side chose and names its vectors by)."""

    def __init__(self, build: Callable[[], Any], name: str, placement: Any) -> None:
        self._build, self._name, self._placement = build, name, placement
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Connection | None = None
        #: why no process serves now (None: one does)
        self._down: str | None = "starting"
        self._closed = False
        self.resident_bytes: int | None = None

    @classmethod
    async def start(cls, build: Callable[[], Any], name: str, placement: Any) -> PassProcess:
        """Started and loaded; raises the kind's load error (the contract's class, or ``EngineError``)."""
        passes = cls(build, name, placement)
        await asyncio.to_thread(passes._spawn)
        return passes

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    @property
    def problem(self) -> str | None:
        """Why the passes cannot run now (None: they can). Notices a process that died while idle."""
        with self._lock:
            conn, proc = self._conn, self._proc
        if conn is not None and proc is not None and not proc.is_alive():
            self._died(conn)
        return self._down

    def forward(self, payloads: list[Any]) -> list[Any]:
        """One batch through the passes' process (on the scheduler's worker thread)."""
        with self._lock:
            conn, down = self._conn, self._down
        if conn is None or down is not None:
            raise EngineUnavailableError(f"engine {self._name} cannot run passes now ({down})", engine=self._name)
        try:
            conn.send(("forward", payloads))
            kind, value = self._receive(conn)
        except (EOFError, OSError):
            reason = self._died(conn)
            raise EngineUnavailableError(reason, engine=self._name) from None
        if kind == "ok":
            results: list[Any] = value
            return results
        assert isinstance(value, RemoteError)
        raise unpack_error(value, engine=self._name)

    def close(self) -> None:
        """End the process (blocking: it finishes the pass it runs, sees the pipe closed and exits)."""
        with self._lock:
            self._closed = True
            self._down = "closed"
            conn, proc, self._conn = self._conn, self._proc, None
        if conn is not None:
            conn.close()
        if proc is not None:
            _stop(proc, self._name)

    # ------------------------------------------------------------------ internals

    def _spawn(self) -> None:
        """Start a process and wait until its kind is loaded (blocking)."""
        from engine_hf.process import child

        ctx = _context()
        ours, theirs = ctx.Pipe(duplex=True)
        proc = ctx.Process(
            target=child.main,
            args=(theirs, self._build, self._name, dict(os.environ),
                  logging.getLogger().getEffectiveLevel()),
            name=f"embed-gateway-passes-{self._name}",
            daemon=True,
        )
        started = time.perf_counter()
        proc.start()
        theirs.close()
        try:
            kind, value = self._receive(ours, until=("ready", "failed"))
            if kind == "failed":
                raise unpack_error(value, engine=self._name)
            resident, placement = value
            if placement != self._placement:
                raise EngineError(f"the passes' process would compute on {placement}, not on {self._placement} as "
                                  "chosen here", engine=self._name)
        except (EOFError, OSError):
            ours.close()
            proc.join(5)
            raise EngineUnavailableError(
                f"engine {self._name}'s passes' process exited while loading (code {proc.exitcode})", engine=self._name
            ) from None
        except BaseException:
            ours.close()
            _stop(proc, self._name)
            raise
        with self._lock:
            kept = not self._closed
            if kept:
                self._proc, self._conn, self._down, self.resident_bytes = proc, ours, None, resident
        if not kept:  # closed while it loaded
            ours.close()
            _stop(proc, self._name)
            return
        log.info("engine %s runs its passes in process %d (up in %.1f s)", self._name, proc.pid,
                 time.perf_counter() - started)

    def _receive(self, conn: Connection, until: tuple[str, ...] = ("ok", "err")) -> tuple[str, Any]:
        """The next answer, writing the log records that come before it."""
        while True:
            kind, value = conn.recv()
            if kind in until:
                return kind, value
            if kind == "log":
                record = logging.makeLogRecord(value)
                logging.getLogger(record.name).handle(record)

    def _died(self, conn: Connection) -> str:
        """The process behind ``conn`` is gone: say why, and start replacing it (once)."""
        with self._lock:
            if self._conn is not conn or self._closed:
                return self._down or "closed"
            proc, self._conn = self._proc, None
        proc.join(5)
        reason = f"engine {self._name}'s passes' process exited (code {proc.exitcode})"
        with self._lock:
            self._down = f"{reason}; restarting"
        conn.close()
        log.error("%s; starting a new one", reason)
        threading.Thread(target=self._restart, args=(reason,), name=f"{self._name}-passes-restart", daemon=True).start()
        return reason

    def _restart(self, reason: str) -> None:
        for attempt in itertools.count():
            time.sleep(RESTART_PAUSES[min(attempt, len(RESTART_PAUSES) - 1)])
            if self._closed:
                return
            try:
                self._spawn()
                return
            except Exception as exc:
                with self._lock:
                    self._down = f"{reason}; restart {attempt + 1} failed: {exc}"
                log.error("engine %s: %s", self._name, self._down)


def _stop(proc: Any, name: str) -> None:
    proc.join(CLOSE_TIMEOUT_S)
    if proc.is_alive():
        log.warning("engine %s's passes' process did not exit within %.0f s; killing it", name, CLOSE_TIMEOUT_S)
        proc.kill()
        proc.join(5)

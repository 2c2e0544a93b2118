"""Managed mode: the gateway runs the vLLM server itself.

Why: on a single GPU host the simplest deployment is one container/service: the gateway starts
vLLM from a configured command line, waits for its ``/health``, restarts it with exponential
backoff whenever it dies, and stops it (SIGTERM, then SIGKILL) on shutdown. Meanwhile the HF
engine serves text-matching, because the router's circuit breaker and the parity guard keep a
starting or restarting vLLM out of the route.

The process runs in its own session (process group), so stopping it also stops vLLM's engine-core
and worker children. If the gateway itself is SIGKILLed the group is orphaned: run under a
supervisor (systemd, a container) that cleans up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine_vllm.settings import ManagedVLLMSettings

__all__ = ["ProcessState", "VLLMProcess", "restart_delay"]

log = logging.getLogger(__name__)

#: how often a starting process's /health is polled
_HEALTH_POLL_S = 0.5


def restart_delay(consecutive_failures: int, *, initial: float, maximum: float) -> float:
    """Seconds to wait before start number ``consecutive_failures + 1``: x2 per failure, capped.

    A process that became healthy resets the count, so one crash after a long healthy run
    restarts after ``initial``, and a crash loop backs off to ``maximum``."""
    if consecutive_failures <= 0:
        return 0.0
    return float(min(maximum, initial * 2 ** (consecutive_failures - 1)))


class ProcessState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"


class VLLMProcess:
    """Supervises one vLLM server process; ``is_healthy`` is the engine's ``GET /health``."""

    def __init__(self, settings: ManagedVLLMSettings, is_healthy: Callable[[], Awaitable[bool]], *, name: str = "vllm") -> None:
        self.settings = settings
        self._is_healthy = is_healthy
        self._name = name
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._log: IO[bytes] | None = None
        self.state = ProcessState.STOPPED
        self.starts = 0
        self.last_exit: int | None = None
        self.healthy_since: float | None = None

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "pid": self.pid,
            "starts": self.starts,
            "restarts": max(0, self.starts - 1),
            "last_exit_code": self.last_exit,
        }

    async def start(self) -> None:
        """Start supervising (returns at once; the process becomes healthy in the background)."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._supervise(), name=f"{self._name}-supervisor")

    async def stop(self) -> None:
        """Stop the process and its children; idempotent."""
        self._stopping.set()
        self.state = ProcessState.STOPPING
        await self._terminate()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._close_log()
        self.state = ProcessState.STOPPED

    # ------------------------------------------------------------------ supervision

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                proc = await self._spawn()
            except OSError as exc:
                log.error("engine %s: cannot start vLLM (%s: %s)", self._name, type(exc).__name__, exc)
                failures += 1
                if await self._backoff(failures):
                    return
                continue
            healthy = await self._wait_healthy(proc)
            if healthy:
                failures = 0
                self.state = ProcessState.RUNNING
                self.healthy_since = time.monotonic()
                log.info("engine %s: vLLM (pid %d) is healthy", self._name, proc.pid)
            elif proc.returncode is None and not self._stopping.is_set():
                log.error(
                    "engine %s: vLLM (pid %d) not healthy after %.0fs; killing it",
                    self._name, proc.pid, self.settings.startup_timeout,
                )
                await self._terminate()
            rc = await proc.wait()
            _signal_group(proc.pid, signal.SIGKILL)  # children of a crashed server (engine core, workers) go too
            self.last_exit, self.healthy_since = rc, None
            self._close_log()
            if self._stopping.is_set():
                return
            failures += 1
            delay = restart_delay(failures, initial=self.settings.restart_initial_delay, maximum=self.settings.restart_max_delay)
            log.error("engine %s: vLLM (pid %d) exited with %s; restarting in %.1fs", self._name, proc.pid, rc, delay)
            if await self._backoff(failures):
                return

    async def _backoff(self, failures: int) -> bool:
        """Sleep before the next start; True when stopped meanwhile."""
        self.state = ProcessState.BACKOFF
        delay = restart_delay(failures, initial=self.settings.restart_initial_delay, maximum=self.settings.restart_max_delay)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        return self._stopping.is_set()

    async def _spawn(self) -> asyncio.subprocess.Process:
        s = self.settings
        out: IO[bytes] | None = None
        if s.log_file:
            out = self._log = open(s.log_file, "ab")  # noqa: SIM115 - closed when the process exits
        self.state = ProcessState.STARTING
        proc = await asyncio.create_subprocess_exec(
            *s.command,
            env={**os.environ, **s.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT if out is not None else None,
            start_new_session=True,  # its own process group: stop() reaches vLLM's children too
        )
        self._proc = proc
        self.starts += 1
        log.info("engine %s: started vLLM (pid %d, start %d): %s", self._name, proc.pid, self.starts, " ".join(s.command))
        return proc

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> bool:
        deadline = time.monotonic() + self.settings.startup_timeout
        while proc.returncode is None and not self._stopping.is_set() and time.monotonic() < deadline:
            try:
                if await self._is_healthy():
                    return True
            except Exception as exc:  # a probe must never kill the supervisor
                log.debug("engine %s: health probe failed: %s", self._name, exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), timeout=_HEALTH_POLL_S)
        return False

    async def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=self.settings.stop_timeout)
        except asyncio.TimeoutError:
            log.warning("engine %s: vLLM (pid %d) ignored SIGTERM for %.0fs; killing", self._name, proc.pid, self.settings.stop_timeout)
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        # vLLM's engine-core and worker children follow their server; whatever is left is killed
        if not await _group_gone(proc.pid, timeout=5.0):
            _signal_group(proc.pid, signal.SIGKILL)
            await _group_gone(proc.pid, timeout=5.0)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


async def _group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)

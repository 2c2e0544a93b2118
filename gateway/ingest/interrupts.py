"""Ctrl-C (SIGINT) during ``embed``: the run stops at once and what is stored stays stored.

``asyncio.run`` alone turns the first Ctrl-C into a cancellation of the run, which takes effect
only when the event loop gets control back. A sink call blocks the loop (a Milvus upsert or query
is a blocking gRPC call; a Parquet part is written in place), so with a slow or unreachable Milvus
server a Ctrl-C waited for that call to return, however long. :class:`CtrlC` is the run's SIGINT
handler instead: while the loop is in control, the first Ctrl-C cancels the run as asyncio does
(in-flight requests are cancelled); inside a blocking sink call it raises ``KeyboardInterrupt``
there and then, abandoning the call. That loses nothing: a Milvus upsert lands whole or not at all
and is keyed by id, a Parquet part is renamed into place only when complete, so the next run of
the same command stores just what is missing. No sink call starts after a Ctrl-C.

A process started with SIGINT ignored (a background job of a non-interactive shell, ``cmd &`` in a
script) keeps ignoring it, as every program does; stop such a run with SIGTERM or SIGKILL, which
lose nothing either.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["CtrlC"]


class CtrlC:
    """The SIGINT handler of one run: :meth:`installed` around ``asyncio.run``, :meth:`watch` the
    run's task from inside it, and :meth:`blocking` around every call that blocks the event loop."""

    def __init__(self) -> None:
        self.pressed = 0
        self._blocking = 0
        self._run: asyncio.Task[Any] | None = None

    @contextmanager
    def installed(self) -> Iterator[CtrlC]:
        """SIGINT comes here for the block: in the main thread, and only where it would otherwise raise
        ``KeyboardInterrupt`` (an ignored SIGINT, or a host program's own handler, is left alone)."""
        if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        ):
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def watch(self, run: asyncio.Task[Any] | None) -> None:
        """The task the first Ctrl-C cancels (the run's main task)."""
        self._run = run

    @contextmanager
    def blocking(self) -> Iterator[None]:
        """Around a call that blocks the event loop: a Ctrl-C during it raises ``KeyboardInterrupt``
        at once; after a Ctrl-C, no such call starts."""
        if self.pressed:
            raise KeyboardInterrupt
        self._blocking += 1
        try:
            yield
        finally:
            self._blocking -= 1

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.pressed += 1
        run = self._run
        if self._blocking or self.pressed > 1 or run is None or run.done():
            raise KeyboardInterrupt
        run.cancel()
        run.get_loop().call_soon_threadsafe(lambda: None)  # wake a loop sleeping in select()

"""The async shell of a run: read -> skip what is stored -> embed concurrently -> write -> report.

Batches are embedded ``concurrency`` at a time (HTTP requests in flight, or jobs queued on the
in-process engine); each finished batch is written at once, so what a crash loses is only what was
in flight. Sink calls block the event loop; each runs inside :meth:`CtrlC.blocking` so that a
Ctrl-C during one stops the run at once (:mod:`gateway.ingest.interrupts`). A row the embedder rejects (``input[i]`` in the server's error) is split out of its
batch and reported by its line; the rest of the batch is retried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from gateway.ingest.embedders import BatchRejected, Embedder
from gateway.ingest.interrupts import CtrlC
from gateway.ingest.plan import (
    BadRowError,
    IngestReport,
    batched,
    flag_duplicate_ids,
    good_records,
    without_done,
    without_index,
    write_batch,
)
from gateway.ingest.progress import Progress
from gateway.ingest.records import BadRecord, FieldSpec, Record
from gateway.ingest.sinks import Sink
from gateway.ingest.sources import count_records, location, read_records

__all__ = ["IngestError", "IngestOptions", "ingest"]


class IngestError(Exception):
    """A run cannot go on (not a single bad row): the message says which rows and why."""


@dataclass(frozen=True, slots=True)
class IngestOptions:
    input: Path
    fmt: str
    fields: FieldSpec = FieldSpec()
    batch_size: int = 32
    concurrency: int = 4
    skip_bad_rows: bool = False
    progress: bool = True
    progress_file: TextIO | None = None


def _forget(running: set[asyncio.Task[None]]):  # type: ignore[no-untyped-def]
    """Done-callback: drop the task and mark its exception retrieved (failures[] reports it)."""

    def done(task: asyncio.Task[None]) -> None:
        running.discard(task)
        if not task.cancelled():
            task.exception()

    return done


async def ingest(options: IngestOptions, embedder: Embedder, sink: Sink, ctrl_c: CtrlC | None = None) -> IngestReport:
    """Run to the end (or the first error); the sink is written but not finished (the caller does).
    ``ctrl_c``: the run's SIGINT handler, when the caller installed one."""
    if options.concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    interrupts = ctrl_c or CtrlC()
    interrupts.watch(asyncio.current_task())
    report = IngestReport()
    where = lambda line: location(options.input, options.fmt, line)  # noqa: E731
    slots = asyncio.Semaphore(options.concurrency)
    running: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    def bad(item: BadRecord) -> None:
        if not options.skip_bad_rows:
            raise BadRowError(f"{where(item.line)}: {item.reason} (--skip-bad-rows skips and reports such rows)")
        report.bad.append(item)
        bar.update(1)

    async def embed_and_write(batch: Sequence[Record]) -> None:
        todo = list(batch)
        try:
            while todo:
                try:
                    out = await embedder.embed([r.text for r in todo])
                except BatchRejected as err:
                    if err.index is None:
                        raise IngestError(
                            f"{where(todo[0].line)} to {todo[-1].line}: the embedder refused the batch: {err.message}"
                        ) from err
                    rejected, todo = without_index(todo, err.index)
                    bad(BadRecord(rejected.line, f"rejected by the embedder: {err.message}", rejected.id))
                    continue
                with interrupts.blocking():
                    written = write_batch(sink, todo, out.vectors, bad, space=out.space, sparse=out.sparse)
                report.embedded += written
                report.tokens += out.total_tokens
                bar.update(written, out.total_tokens)
                todo = []
        except BaseException as exc:
            failures.append(exc)
            raise
        finally:
            slots.release()

    await embedder.start()  # loading a model is not ingestion time
    bar = Progress(count_records(options.input, options.fmt), enabled=options.progress, file=options.progress_file)
    started = time.perf_counter()
    try:
        items = flag_duplicate_ids(read_records(options.input, options.fmt, options.fields))
        for chunk in batched(items, options.batch_size):
            records = good_records(chunk, report, bad)
            with interrupts.blocking():
                todo, held = without_done(records, sink.done) if records else ([], 0)
            if held:
                report.already_stored += held
                bar.update(held)
            if not todo:
                continue
            await slots.acquire()
            if failures:
                slots.release()
                break
            task = asyncio.create_task(embed_and_write(todo))
            running.add(task)
            task.add_done_callback(_forget(running))
        if running:
            await asyncio.wait(set(running))
        if failures:
            raise failures[0]
    finally:
        for task in list(running):
            task.cancel()
        if running:
            await asyncio.wait(set(running))
        bar.close()
        report.bad.sort(key=lambda b: b.line)  # rejections arrive in completion order
        report.seconds = time.perf_counter() - started
        report.retries = embedder.stats.retries
        report.waited_seconds = embedder.stats.waited_seconds
        await embedder.aclose()
    return report

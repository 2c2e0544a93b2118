"""The async shell of a run: read -> skip what is stored -> embed concurrently -> write -> report.

A run has one or more lanes, one per model: an embedder and the sink its vectors go to. The input
is read once; each batch of rows goes to every lane that does not hold it yet (each lane resumes on
its own, so one model may be ahead of the other) and is embedded ``concurrency`` at a time per
lane (HTTP requests in flight, or jobs queued on the in-process engine); each finished batch is
written at once, so what a crash loses is only what was in flight. With several lanes, every model
first answers one short text and every sink checks that answer (its width, its vector space)
before anything is written anywhere: a run refused by one store writes nothing to the others. Sink calls block the event loop; each runs inside :meth:`CtrlC.blocking` so that a
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

from gateway.ingest.embedders import BatchRejected, Embedder, SparseUnsupportedError
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

__all__ = ["IngestError", "IngestOptions", "Lane", "PROBE", "ingest", "ingest_lanes"]

#: the text each model embeds once before a run with several models writes anything
PROBE = "embed-gateway checks every vector space before it writes"


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


@dataclass(frozen=True, slots=True)
class Lane:
    """One model's share of a run. ``name`` (the model) labels its progress bar and its errors
    when a run has several lanes."""

    embedder: Embedder
    sink: Sink
    name: str | None = None


def _forget(running: set[asyncio.Task[None]]):  # type: ignore[no-untyped-def]
    """Done-callback: drop the task and mark its exception retrieved (failures[] reports it)."""

    def done(task: asyncio.Task[None]) -> None:
        running.discard(task)
        if not task.cancelled():
            task.exception()

    return done


async def ingest(options: IngestOptions, embedder: Embedder, sink: Sink, ctrl_c: CtrlC | None = None) -> IngestReport:
    """Run one model to the end (or the first error); the sink is written but not finished (the
    caller does). ``ctrl_c``: the run's SIGINT handler, when the caller installed one."""
    return (await ingest_lanes(options, [Lane(embedder, sink)], ctrl_c))[0]


async def _preflight(lanes: Sequence[Lane], interrupts: CtrlC) -> None:
    """Every model embeds :data:`PROBE` and every sink checks the answer, before any is written.

    Raises what the first batch would (an unknown model, a ``--dimensions`` it cannot make, no
    sparse output, a store holding another space or width), naming the model."""
    answers = await asyncio.gather(*(lane.embedder.embed([PROBE]) for lane in lanes), return_exceptions=True)
    checks: list[tuple[Sink, int, str | None]] = []
    for lane, out in zip(lanes, answers, strict=True):
        if isinstance(out, BatchRejected):
            raise IngestError(f"model {lane.name}: refused before anything was written: {out.message}") from out
        if isinstance(out, SparseUnsupportedError):
            raise SparseUnsupportedError(f"model {lane.name}: {out}") from out
        if isinstance(out, BaseException):
            raise out
        checks.append((lane.sink, int(out.vectors.shape[1]), out.space))
    for sink, dims, space in checks:
        with interrupts.blocking():
            sink.preflight(dims, space)


async def ingest_lanes(
    options: IngestOptions, lanes: Sequence[Lane], ctrl_c: CtrlC | None = None
) -> list[IngestReport]:
    """Read the input once and run every lane to the end (or the first error of any); one report
    per lane, in order. The sinks are written but not finished (the caller does)."""
    if options.concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if not lanes:
        raise ValueError("a run needs at least one lane")
    interrupts = ctrl_c or CtrlC()
    interrupts.watch(asyncio.current_task())
    several = len(lanes) > 1
    reports = [IngestReport() for _ in lanes]
    bars: list[Progress] = []
    where = lambda line: location(options.input, options.fmt, line)  # noqa: E731
    slots = [asyncio.Semaphore(options.concurrency) for _ in lanes]
    running: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    def bad(k: int | None, item: BadRecord) -> None:
        """A bad row of lane ``k``, or of the input itself (None: bad for every model)."""
        if not options.skip_bad_rows:
            model = f" (model {lanes[k].name})" if several and k is not None else ""
            raise BadRowError(f"{where(item.line)}{model}: {item.reason} (--skip-bad-rows skips and reports such rows)")
        for i in range(len(lanes)) if k is None else (k,):
            reports[i].bad.append(item)
            bars[i].update(1)

    async def embed_and_write(k: int, batch: Sequence[Record]) -> None:
        lane, report, bar = lanes[k], reports[k], bars[k]
        todo = list(batch)
        try:
            while todo:
                try:
                    out = await lane.embedder.embed([r.text for r in todo])
                except BatchRejected as err:
                    if err.index is None:
                        model = f"model {lane.name}: " if several else ""
                        raise IngestError(
                            f"{where(todo[0].line)} to {todo[-1].line}: {model}the embedder refused the batch: "
                            f"{err.message}"
                        ) from err
                    rejected, todo = without_index(todo, err.index)
                    bad(k, BadRecord(rejected.line, f"rejected by the embedder: {err.message}", rejected.id))
                    continue
                with interrupts.blocking():
                    written = write_batch(lane.sink, todo, out.vectors, lambda item: bad(k, item), space=out.space,
                                          sparse=out.sparse)
                report.embedded += written
                report.tokens += out.total_tokens
                bar.update(written, out.total_tokens)
                todo = []
        except BaseException as exc:
            failures.append(exc)
            raise
        finally:
            slots[k].release()

    started: list[Embedder] = []
    try:
        for lane in lanes:  # loading a model is not ingestion time
            await lane.embedder.start()
            started.append(lane.embedder)
        if several:
            await _preflight(lanes, interrupts)
        total = count_records(options.input, options.fmt)
        for k, lane in enumerate(lanes):
            bars.append(Progress(total, enabled=options.progress, file=options.progress_file,
                                 desc=(lane.name or "embedding") if several else "embedding",
                                 position=k if several else None))
        began = time.perf_counter()
        try:
            items = flag_duplicate_ids(read_records(options.input, options.fmt, options.fields))
            for chunk in batched(items, options.batch_size):
                records = good_records(chunk, reports[0], lambda item: bad(None, item))
                for k, lane in enumerate(lanes):
                    with interrupts.blocking():
                        todo, held = without_done(records, lane.sink.done) if records else ([], 0)
                    if held:
                        reports[k].already_stored += held
                        bars[k].update(held)
                    if not todo:
                        continue
                    await slots[k].acquire()
                    if failures:
                        slots[k].release()
                        break
                    task = asyncio.create_task(embed_and_write(k, todo))
                    running.add(task)
                    task.add_done_callback(_forget(running))
                if failures:
                    break
            if running:
                await asyncio.wait(set(running))
            if failures:
                raise failures[0]
        finally:
            for task in list(running):
                task.cancel()
            if running:
                await asyncio.wait(set(running))
            seconds = time.perf_counter() - began
            for report, bar, lane in zip(reports, bars, lanes, strict=True):
                bar.close()
                report.read = reports[0].read
                report.bad.sort(key=lambda b: b.line)  # rejections arrive in completion order
                report.seconds = seconds
                report.retries = lane.embedder.stats.retries
                report.waited_seconds = lane.embedder.stats.waited_seconds
    finally:
        for embedder in started:
            await embedder.aclose()
    return reports

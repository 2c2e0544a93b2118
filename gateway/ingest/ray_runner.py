"""``embed --ray MODEL``: the same run as :mod:`~gateway.ingest.runner`, on Ray Data.

The driver reads and checks the input exactly as the other paths do (bad rows, duplicate ids) and
drops what the sink already holds (resume), then hands the rows to Ray Data in Arrow blocks: a
streaming ``map_batches`` over an actor pool of :class:`~gateway.ingest.ray_encoder.HFEncoderActor`
(``--ray-actors`` actors, ``--ray-gpus-per-actor`` GPUs each). Finished batches stream back to the
driver, which writes each at once through the same sinks (Parquet/.npy parts, Milvus upserts), so an
interrupted run resumes like today. Rows travel through Ray's object store, so a multi-host cluster
needs no shared file system.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.ingest.plan import (
    BadRowError,
    IngestReport,
    batched,
    flag_duplicate_ids,
    good_records,
    without_done,
    write_batch,
)
from gateway.ingest.progress import Progress
from gateway.ingest.records import BadRecord, Record
from gateway.ingest.runner import IngestError, IngestOptions
from gateway.ingest.sinks import Sink
from gateway.ingest.sources import location, read_records

__all__ = ["RayOptions", "ingest_on_ray"]

#: rows per Arrow block handed to Ray Data (blocks are what the pool's actors pull)
_BLOCK_ROWS = 4096


@dataclass(frozen=True, slots=True)
class RayOptions:
    model: str
    task: str
    dimensions: int | None = None
    truncate: bool = False
    #: the cluster (``ray://host:10001``); None = ``$RAY_ADDRESS``, else a local Ray for this run
    address: str | None = None
    actors: int = 1
    #: GPUs per actor; None = 1 when the cluster has GPUs, else 0
    gpus_per_actor: float | None = None
    cpus_per_actor: float = 1.0
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    #: tokens per forward pass in each actor (engines.hf.max_batch_tokens); None = the device's best
    max_batch_tokens: int | None = None


def _blocks(rows: Sequence[Record], *, actors: int, batch_size: int) -> Iterator[Any]:
    """Arrow blocks of at most ``_BLOCK_ROWS`` rows, at least ~4 per actor so every actor has work."""
    import pyarrow as pa

    size = max(batch_size, min(_BLOCK_ROWS, -(-len(rows) // (4 * actors))))
    for chunk in batched(rows, size):
        yield pa.table({
            "line": pa.array([r.line for r in chunk], pa.int64()),
            "text": pa.array([r.text for r in chunk], pa.string()),
        })  # ids and metadata stay on the driver (by line): only what the actors need travels


def ingest_on_ray(options: IngestOptions, ray_options: RayOptions, sink: Sink) -> IngestReport:
    """Run to the end (or the first error); the sink is written but not finished (the caller does)."""
    import ray

    report = IngestReport()
    where = lambda line: location(options.input, options.fmt, line)  # noqa: E731
    bar: Progress | None = None

    def bad(item: BadRecord) -> None:
        if not options.skip_bad_rows:
            raise BadRowError(f"{where(item.line)}: {item.reason} (--skip-bad-rows skips and reports such rows)")
        report.bad.append(item)
        if bar is not None:
            bar.update(1)

    # 1. read, check and drop what is stored: the same rules as the other paths, on the driver
    todo: list[Record] = []
    for chunk in batched(flag_duplicate_ids(read_records(options.input, options.fmt, options.fields)), 1024):
        records = good_records(chunk, report, bad)
        kept, held = without_done(records, sink.done) if records else ([], 0)
        report.already_stored += held
        todo.extend(kept)

    started_here = False
    if not ray.is_initialized():
        address = ray_options.address or os.environ.get("RAY_ADDRESS")
        started_here = address is None
        ray.init(address=address, include_dashboard=False if started_here else None, log_to_driver=True)
    try:
        bar = Progress(report.read, enabled=options.progress, file=options.progress_file)  # step 1 read them all
        bar.update(report.already_stored + len(report.bad))
        started = time.perf_counter()
        if todo:
            try:
                _run(todo, options, ray_options, sink, report, bar, bad)
            except ray.exceptions.RayError as exc:  # an actor that cannot start, a lost node: what is stored stays
                raise IngestError(f"Ray Data failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
        report.seconds = time.perf_counter() - started
    finally:
        if bar is not None:
            bar.close()
        if started_here:
            ray.shutdown()
    report.bad.sort(key=lambda b: b.line)
    return report


def _run(todo: Sequence[Record], options: IngestOptions, ro: RayOptions, sink: Sink, report: IngestReport,
         bar: Progress, bad: Any) -> None:
    import ray
    import ray.data

    from engine_hf.settings import HFEngineSettings
    from gateway.ingest.ray_encoder import HFEncoderActor

    gpus = ro.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    settings = HFEngineSettings(
        model=ro.model, device=ro.device, dtype=ro.dtype, threads=ro.threads,  # type: ignore[arg-type]
        max_batch_tokens=ro.max_batch_tokens,
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts rows and tokens on the driver; Ray's dashboard shows operators
    ctx.enable_rich_progress_bars = False
    ctx.execution_options.preserve_order = False  # the sinks order by line; let free actors take any block
    by_line = {r.line: r for r in todo}
    blocks = list(_blocks(todo, actors=ro.actors, batch_size=options.batch_size))
    ds = ray.data.from_arrow(blocks).map_batches(
        HFEncoderActor,
        fn_constructor_kwargs={"settings": settings.model_dump(mode="json"), "task": ro.task,
                               "dimensions": ro.dimensions, "truncate": ro.truncate},
        batch_size=options.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=ro.actors),
        num_gpus=gpus,
        num_cpus=ro.cpus_per_actor,
    )
    for out in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
        lines = [int(x) for x in out["line"]]
        errors = [str(e) for e in out["error"]]
        good = [i for i, e in enumerate(errors) if not e]
        for i, e in enumerate(errors):
            if e:
                bad(BadRecord(lines[i], e, by_line[lines[i]].id))
        if not good:
            continue
        records = [by_line[lines[i]] for i in good]
        written = write_batch(sink, records, np.asarray(out["vector"][good], dtype=np.float32), bad)
        n_tokens = int(out["tokens"][good].sum())
        report.embedded += written
        report.tokens += n_tokens
        bar.update(written, n_tokens)

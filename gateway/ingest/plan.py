"""The pure parts of a run: duplicate ids, batching, resume filtering, the report.

Resuming works from what the sink already holds, not from a side journal: each batch is written
atomically (a Parquet part renamed into place, a Milvus upsert keyed by id), and before a batch
is embedded the ids its sink already has are dropped. A run killed at any point therefore loses
at most the batches in flight, and the next run neither repeats nor duplicates what was stored.
"""

from __future__ import annotations

import dataclasses

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from gateway.contract import SparseVector
from gateway.ingest.records import BadRecord, Record
from gateway.ingest.sinks import RowsRejected, Sink
from gateway.ingest.stamp import StampMismatchError

__all__ = [
    "BadRowError", "IngestReport", "batched", "flag_duplicate_ids", "good_records", "without_done", "without_index",
    "write_batch",
]

T = TypeVar("T")


class BadRowError(Exception):
    """A row that cannot be embedded while ``--skip-bad-rows`` is off; the message names its line."""


def flag_duplicate_ids(items: Iterable[Record | BadRecord]) -> Iterator[Record | BadRecord]:
    """A repeated id would overwrite (Milvus) or duplicate (Parquet) a row: make it a bad row."""
    first_line: dict[str, int] = {}
    for item in items:
        if isinstance(item, Record):
            seen = first_line.setdefault(item.id, item.line)
            if seen != item.line:
                yield BadRecord(item.line, f"duplicate id {item.id!r} (first at {seen})", item.id)
                continue
        yield item


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    if size < 1:
        raise ValueError("batch size must be >= 1")
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def good_records(
    chunk: Iterable[Record | BadRecord], report: IngestReport, bad: Callable[[BadRecord], None]
) -> list[Record]:
    """The records of ``chunk``, each row counted as read; a bad row goes to ``bad`` (which decides
    whether the run stops or skips it)."""
    records: list[Record] = []
    for item in chunk:
        report.read += 1
        if isinstance(item, BadRecord):
            bad(item)
        else:
            records.append(item)
    return records


def without_done(batch: Sequence[Record], done: Callable[[Sequence[str]], set[str]]) -> tuple[list[Record], int]:
    """The records of ``batch`` whose ids the sink does not hold yet, and how many it held."""
    have = done([r.id for r in batch])
    todo = [r for r in batch if r.id not in have]
    return todo, len(batch) - len(todo)


def without_index(batch: Sequence[Record], index: int) -> tuple[Record, list[Record]]:
    """Split out the record the server rejected (``input[index]``) from the rest of its batch."""
    if not 0 <= index < len(batch):
        raise IndexError(f"the server named input[{index}] in a batch of {len(batch)}")
    return batch[index], [r for i, r in enumerate(batch) if i != index]


def write_batch(
    sink: Sink, records: Sequence[Record], vectors: npt.NDArray[np.float32], bad: Callable[[BadRecord], None],
    space: str | None = None, sparse: Sequence[SparseVector] | None = None,
) -> int:
    """Write one embedded batch; rows the store refuses (an id too long for its key, a NUL byte
    Postgres cannot hold) go to ``bad`` and the rest is written. Returns the rows written.

    ``space``: the vector space the gateway said the batch is in (``x-embed-space``): the sink's
    stamp takes it before its first write, so the store is stamped with it (or, holding another
    space, refuses the write: :class:`~gateway.ingest.stamp.StampMismatchError`). ``sparse``: one
    sparse vector per record (hybrid search), stored beside the dense one."""
    stamp = getattr(sink, "stamp", None)
    if space is not None and stamp is not None:
        if stamp.space is None:
            sink.stamp = dataclasses.replace(stamp, space=space)  # type: ignore[attr-defined]
        elif stamp.space != space:
            raise StampMismatchError(f"the gateway answered in vector space {space!r} after {stamp.space!r} in the "
                                     "same run; nothing of this batch was written")
    todo, vecs, sp = list(records), vectors, None if sparse is None else list(sparse)
    while todo:
        try:
            if sp is None:
                sink.write(todo, vecs)
            else:
                sink.write(todo, vecs, sparse=sp)
            return len(todo)
        except RowsRejected as err:
            for i in sorted(err.reasons):
                bad(BadRecord(todo[i].line, f"refused by the store: {err.reasons[i]}", todo[i].id))
            keep = [i for i in range(len(todo)) if i not in err.reasons]
            todo, vecs = [todo[i] for i in keep], vecs[keep]
            sp = None if sp is None else [sp[i] for i in keep]
    return 0


@dataclass(slots=True)
class IngestReport:
    """What a run did; printed at the end and returned to callers (tests, scripts)."""

    read: int = 0
    embedded: int = 0
    already_stored: int = 0
    tokens: int = 0
    retries: int = 0
    waited_seconds: float = 0.0
    seconds: float = 0.0
    bad: list[BadRecord] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.embedded / self.seconds if self.seconds > 0 else 0.0
        tok_rate = self.tokens / self.seconds if self.seconds > 0 else 0.0
        parts = [
            f"{self.embedded} rows embedded", f"{self.already_stored} already stored (resumed)",
            f"{len(self.bad)} bad rows skipped", f"{self.tokens} tokens",
            f"{self.seconds:.1f} s", f"{rate:.1f} rows/s", f"{tok_rate:.0f} tokens/s",
        ]
        if self.retries:
            parts.append(f"{self.retries} retries after 429/503 ({self.waited_seconds:.1f} s waited)")
        return ", ".join(parts)

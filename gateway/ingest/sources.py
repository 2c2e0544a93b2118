"""Readers for the input formats: a stream of records that remember their line.

JSONL (``.jsonl``/``.ndjson``): one JSON object per line, blank lines ignored. CSV/TSV: a header
row, then one row per record (a record's line is the file line it ends on). Parquet: one record per
row, numbered from 1 ("row N" in messages). Text (``.txt``): each non-blank line is one text.
Readers stream, so a file larger than memory is fine.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from gateway.ingest.records import BadRecord, FieldSpec, Record, record_from_mapping, record_from_text

__all__ = ["FORMATS", "count_records", "detect_format", "location", "read_records"]

FORMATS = ("jsonl", "csv", "tsv", "parquet", "text")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv",
             ".parquet": "parquet", ".pq": "parquet", ".txt": "text", ".text": "text"}


def detect_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; one of: {', '.join(FORMATS)}")
        return fmt
    try:
        return _SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"cannot tell the format of {path.name} from its suffix; pass --format ({', '.join(FORMATS)})"
        ) from None


def location(path: Path, fmt: str, line: int) -> str:
    """How messages name a record: ``data.jsonl line 17`` / ``data.parquet row 17``."""
    return f"{path.name} {'row' if fmt == 'parquet' else 'line'} {line}"


def _decoded_lines(path: Path) -> Iterator[tuple[int, str | None]]:
    """(line number, text) per physical line; text None when the line is not valid UTF-8."""
    with path.open("rb") as f:
        for line, raw in enumerate(f, start=1):
            try:
                yield line, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield line, None


def _jsonl(path: Path, spec: FieldSpec) -> Iterator[Record | BadRecord]:
    for line, raw in _decoded_lines(path):
        if raw is None:
            yield BadRecord(line, "not valid UTF-8")
            continue
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield BadRecord(line, f"invalid JSON: {exc.msg} at column {exc.colno}")
            continue
        yield record_from_mapping(obj, line, spec)


def _csv(path: Path, spec: FieldSpec, delimiter: str) -> Iterator[Record | BadRecord]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        if reader.fieldnames is None:
            return
        if spec.text not in reader.fieldnames:
            raise ValueError(f"{path.name}: no column {spec.text!r} in the header ({', '.join(reader.fieldnames)})")
        for row in reader:
            if None in row:  # more cells than header columns
                yield BadRecord(reader.line_num, f"{len(reader.fieldnames) + len(row[None])} cells, header has {len(reader.fieldnames)}")  # type: ignore[index]
                continue
            yield record_from_mapping(row, reader.line_num, spec)


def _parquet(path: Path, spec: FieldSpec) -> Iterator[Record | BadRecord]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    if spec.text not in names:
        raise ValueError(f"{path.name}: no column {spec.text!r} (columns: {', '.join(names)})")
    row = 0
    for batch in pf.iter_batches(batch_size=4096):
        for obj in batch.to_pylist():
            row += 1
            yield record_from_mapping(obj, row, spec)


def _text(path: Path) -> Iterator[Record | BadRecord]:
    for line, text in _decoded_lines(path):
        if text is None:
            yield BadRecord(line, "not valid UTF-8")
        elif text.strip():
            yield record_from_text(text, line)


def read_records(path: Path, fmt: str, spec: FieldSpec) -> Iterator[Record | BadRecord]:
    """Stream the records of ``path`` (``fmt`` from :func:`detect_format`)."""
    if fmt == "jsonl":
        return _jsonl(path, spec)
    if fmt in ("csv", "tsv"):
        return _csv(path, spec, "," if fmt == "csv" else "\t")
    if fmt == "parquet":
        return _parquet(path, spec)
    if fmt == "text":
        return _text(path)
    raise ValueError(f"unknown format {fmt!r}")


def count_records(path: Path, fmt: str) -> int | None:
    """Cheap total for the progress bar (Parquet metadata, or non-blank lines); None if unknown."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    try:
        with path.open("rb") as f:
            n = sum(1 for raw in f if raw.strip())
    except OSError:
        return None
    return max(0, n - 1) if fmt in ("csv", "tsv") else n

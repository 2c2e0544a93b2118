"""One input row, good or bad, and how a row of any format becomes one (pure).

A row keeps the line (or Parquet row) it came from, so every error can name it. Its id is the
``--id-field`` value, else its line number: stable across runs of the same file, which is what
resuming relies on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BadRecord", "FieldSpec", "Record", "record_from_mapping", "record_from_text"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """Which fields hold the text, the id and the metadata (``metadata=("*",)`` = all others)."""

    text: str = "text"
    id: str | None = None
    metadata: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Record:
    line: int
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BadRecord:
    line: int
    reason: str
    id: str | None = None


def _metadata(row: Mapping[str, Any], spec: FieldSpec) -> dict[str, Any] | str:
    if not spec.metadata:
        return {}
    if spec.metadata == ("*",):
        keys = [k for k in row if k not in (spec.text, spec.id)]
    else:
        missing = [k for k in spec.metadata if k not in row]
        if missing:
            return f"metadata field {missing[0]!r} is missing"
        keys = list(spec.metadata)
    meta = {k: row[k] for k in keys}
    try:
        json.dumps(meta, default=str)
    except (TypeError, ValueError) as exc:  # e.g. a float NaN is fine, a set is not
        return f"metadata is not JSON-serialisable: {exc}"
    return meta


def record_from_mapping(row: Any, line: int, spec: FieldSpec) -> Record | BadRecord:
    """A JSON object / CSV row / Parquet row -> a record, or a bad record saying what is wrong."""
    if not isinstance(row, Mapping):
        return BadRecord(line, f"expected an object with a {spec.text!r} field, got {type(row).__name__}")
    rid: str | None = str(line)
    if spec.id is not None:
        raw_id = row.get(spec.id)
        if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
            return BadRecord(line, f"id field {spec.id!r} is missing or empty")
        if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool):
            return BadRecord(line, f"id field {spec.id!r} must be a string or an integer, got {type(raw_id).__name__}")
        rid = str(raw_id)
    if spec.text not in row or row[spec.text] is None:
        return BadRecord(line, f"text field {spec.text!r} is missing", rid)
    text = row[spec.text]
    if not isinstance(text, str):
        return BadRecord(line, f"text field {spec.text!r} must be a string, got {type(text).__name__}", rid)
    if not text.strip():
        return BadRecord(line, f"text field {spec.text!r} is empty", rid)
    meta = _metadata(row, spec)
    if isinstance(meta, str):
        return BadRecord(line, meta, rid)
    return Record(line=line, id=rid, text=text, metadata=meta)


def record_from_text(text: str, line: int) -> Record:
    """A plain-text line (the caller skips blank lines)."""
    return Record(line=line, id=str(line), text=text)

"""Duplicate ids, batching, resume filtering, rejected inputs: pure."""

from __future__ import annotations

import pytest

from gateway.ingest.plan import IngestReport, batched, flag_duplicate_ids, without_done, without_index
from gateway.ingest.records import BadRecord, Record


def rec(line: int, rid: str | None = None) -> Record:
    return Record(line, rid or str(line), f"text {line}")


def test_duplicate_ids_become_bad_rows_naming_the_first() -> None:
    items = [rec(1, "a"), rec(2, "b"), BadRecord(3, "x"), rec(4, "a")]
    out = list(flag_duplicate_ids(items))
    assert out[:3] == items[:3]
    assert isinstance(out[3], BadRecord) and out[3].line == 4 and "duplicate id 'a' (first at 1)" in out[3].reason


def test_batched() -> None:
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 3)) == []
    with pytest.raises(ValueError):
        list(batched([1], 0))


def test_without_done_asks_the_sink_once_per_batch() -> None:
    asked: list[list[str]] = []

    def done(ids):  # type: ignore[no-untyped-def]
        asked.append(list(ids))
        return {"2", "3"}

    todo, held = without_done([rec(1), rec(2), rec(3), rec(4)], done)
    assert [r.line for r in todo] == [1, 4] and held == 2 and asked == [["1", "2", "3", "4"]]


def test_without_index() -> None:
    bad, rest = without_index([rec(1), rec(2), rec(3)], 1)
    assert bad.line == 2 and [r.line for r in rest] == [1, 3]
    with pytest.raises(IndexError):
        without_index([rec(1)], 1)


def test_report_summary() -> None:
    r = IngestReport(embedded=100, already_stored=20, tokens=5000, seconds=2.0, retries=2, waited_seconds=2.0,
                     bad=[BadRecord(1, "x")])
    s = r.summary()
    for part in ("100 rows embedded", "20 already stored", "1 bad rows", "50.0 rows/s", "2500 tokens/s",
                 "2 retries after 429/503 (2.0 s waited)"):
        assert part in s, s

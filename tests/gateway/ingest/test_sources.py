"""Readers: every format yields records that remember their line (or Parquet row)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway.ingest.records import BadRecord, FieldSpec, Record
from gateway.ingest.sources import count_records, detect_format, location, read_records


def lines_of(items: list[Record | BadRecord]) -> list[tuple[int, str]]:
    return [(i.line, i.text if isinstance(i, Record) else "BAD:" + i.reason) for i in items]


def test_detect_format(tmp_path: Path) -> None:
    assert [detect_format(Path(n)) for n in ("a.jsonl", "a.NDJSON", "a.csv", "a.tsv", "a.parquet", "a.txt")] == [
        "jsonl", "jsonl", "csv", "tsv", "parquet", "text"]
    assert detect_format(Path("a.data"), "csv") == "csv"
    with pytest.raises(ValueError, match="--format"):
        detect_format(Path("a.data"))
    assert location(Path("/x/a.parquet"), "parquet", 3) == "a.parquet row 3"
    assert location(Path("/x/a.jsonl"), "jsonl", 3) == "a.jsonl line 3"


def test_jsonl_lines_blank_lines_and_bad_json(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    p.write_text('{"text": "one"}\n\n{"text": "two"}\n{oops\n{"nope": 1}\n')
    got = list(read_records(p, "jsonl", FieldSpec()))
    assert lines_of(got)[:2] == [(1, "one"), (3, "two")]
    assert got[2].line == 4 and "invalid JSON" in got[2].reason  # type: ignore[union-attr]
    assert got[3].line == 5 and "missing" in got[3].reason  # type: ignore[union-attr]
    assert count_records(p, "jsonl") == 4


def test_csv_line_is_where_the_row_ends(tmp_path: Path) -> None:
    p = tmp_path / "in.csv"
    p.write_text('id,text,lang\na,"first",en\nb,"two\nlines",de\nc,,fr\nd,x,en,extra\n', encoding="utf-8")
    got = list(read_records(p, "csv", FieldSpec(id="id", metadata=("lang",))))
    assert got[0] == Record(2, "a", "first", {"lang": "en"})
    assert got[1] == Record(4, "b", "two\nlines", {"lang": "de"})
    assert isinstance(got[2], BadRecord) and got[2].line == 5 and "empty" in got[2].reason
    assert isinstance(got[3], BadRecord) and got[3].line == 6 and "4 cells, header has 3" in got[3].reason
    with pytest.raises(ValueError, match="no column 'body'"):
        list(read_records(p, "csv", FieldSpec(text="body")))


def test_tsv(tmp_path: Path) -> None:
    p = tmp_path / "in.tsv"
    p.write_text("text\tn\nhello, world\t1\n")
    assert list(read_records(p, "tsv", FieldSpec(metadata=("*",)))) == [Record(2, "2", "hello, world", {"n": "1"})]


def test_parquet_rows(tmp_path: Path) -> None:
    p = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"], "k": [1, 2, 3]}), p)
    got = list(read_records(p, "parquet", FieldSpec(metadata=("k",))))
    assert got[0] == Record(1, "1", "a", {"k": 1}) and got[2] == Record(3, "3", "c", {"k": 3})
    assert isinstance(got[1], BadRecord) and got[1].line == 2
    assert count_records(p, "parquet") == 3
    with pytest.raises(ValueError, match="no column 'body'"):
        list(read_records(p, "parquet", FieldSpec(text="body")))


def test_text_lines(tmp_path: Path) -> None:
    p = tmp_path / "in.txt"
    p.write_text("first line\n\n  \nsecond line\r\n", encoding="utf-8")
    assert list(read_records(p, "text", FieldSpec())) == [Record(1, "1", "first line"), Record(4, "4", "second line")]
    assert count_records(p, "text") == 2


def test_jsonl_invalid_utf8_is_a_bad_row(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    p.write_bytes(json.dumps({"text": "ok"}).encode() + b"\n" + b'{"text": "\xff"}\n' + b'{"text": "after"}\n')
    got = list(read_records(p, "jsonl", FieldSpec()))
    assert isinstance(got[0], Record) and isinstance(got[1], BadRecord) and "UTF-8" in got[1].reason
    assert got[1].line == 2 and got[2] == Record(3, "3", "after")

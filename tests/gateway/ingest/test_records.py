"""Turning one row into a record, or a bad record that says what is wrong (pure)."""

from __future__ import annotations

import pytest

from gateway.ingest.records import BadRecord, FieldSpec, Record, record_from_mapping, record_from_text


def test_good_row_with_id_and_metadata() -> None:
    spec = FieldSpec(text="body", id="doc", metadata=("lang",))
    got = record_from_mapping({"body": "hello", "doc": 7, "lang": "en", "other": 1}, 3, spec)
    assert got == Record(line=3, id="7", text="hello", metadata={"lang": "en"})
    every = record_from_mapping({"body": "hello", "doc": "a", "lang": "en", "other": 1}, 3,
                                FieldSpec(text="body", id="doc", metadata=("*",)))
    assert isinstance(every, Record) and every.metadata == {"lang": "en", "other": 1}


def test_default_id_is_the_line() -> None:
    assert record_from_mapping({"text": "x"}, 12, FieldSpec()) == Record(12, "12", "x")
    assert record_from_text("plain", 4) == Record(4, "4", "plain")


@pytest.mark.parametrize(
    ("row", "spec", "reason"),
    [
        ({"txt": "x"}, FieldSpec(), "text field 'text' is missing"),
        ({"text": None}, FieldSpec(), "text field 'text' is missing"),
        ({"text": "  "}, FieldSpec(), "text field 'text' is empty"),
        ({"text": 5}, FieldSpec(), "must be a string, got int"),
        (["text"], FieldSpec(), "expected an object"),
        ({"text": "x"}, FieldSpec(id="id"), "id field 'id' is missing or empty"),
        ({"text": "x", "id": ""}, FieldSpec(id="id"), "id field 'id' is missing or empty"),
        ({"text": "x", "id": 1.5}, FieldSpec(id="id"), "must be a string or an integer"),
        ({"text": "x"}, FieldSpec(metadata=("lang",)), "metadata field 'lang' is missing"),
    ],
)
def test_bad_rows_say_why(row: object, spec: FieldSpec, reason: str) -> None:
    got = record_from_mapping(row, 9, spec)
    assert isinstance(got, BadRecord) and got.line == 9 and reason in got.reason, got

"""The loaders: BEIR's layout (header, ``title + " " + text``) and Mem0-style memories, one shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.eval.data import EvalDataError, load_beir, load_dataset, load_memories
from tests.gateway.eval.labelled import build, write_beir, write_memories


def _lines(path: Path, rows: list[object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def _beir(folder: Path, corpus: list[object], queries: list[object], qrels: str) -> Path:
    _lines(folder / "corpus.jsonl", corpus)
    _lines(folder / "queries.jsonl", queries)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


def test_beir_joins_title_and_text_as_beir_does_and_skips_the_header(tmp_path: Path) -> None:
    folder = _beir(
        tmp_path,
        [{"_id": "a", "title": "Coffee", "text": "dark roast"}, {"_id": 7, "title": "", "text": " only text "},
         {"_id": "c", "text": "no title key"}, {"_id": "d", "title": "Title only", "text": ""}],
        [{"_id": "q1", "text": "roast?"}, {"_id": "q2", "text": "title"}],
        "query-id\tcorpus-id\tscore\nq1\ta\t2\nq1\t7\t0\nq2\td\t1\n",
    )
    data = load_beir(folder)
    texts = dict(zip(data.doc_ids, data.doc_texts, strict=True))
    assert texts == {"a": "Coffee dark roast", "7": "only text", "c": "no title key", "d": "Title only"}
    assert data.query_ids == ("q1", "q2") and data.query_texts == ("roast?", "title")
    assert data.qrels == {"q1": {"a": 2, "7": 0}, "q2": {"d": 1}}
    assert data.layout == "beir" and data.notes == ()


def test_beir_leaves_out_what_cannot_be_scored_and_says_so(tmp_path: Path) -> None:
    folder = _beir(
        tmp_path,
        [{"_id": "a", "text": "kept"}, {"_id": "b", "title": "", "text": "  "}],
        [{"_id": "q1", "text": "judged"}, {"_id": "q2", "text": "only a zero grade"}, {"_id": "q3", "text": "unjudged"}],
        "query-id\tcorpus-id\tscore\nq1\ta\t1\nq1\tgone\t1\nq2\ta\t0\nq9\ta\t1\n",
    )
    data = load_beir(folder)
    assert data.doc_ids == ("a",) and data.query_ids == ("q1",)
    assert data.qrels == {"q1": {"a": 1, "gone": 1}}  # an unknown document stays relevant: recall counts it
    notes = " | ".join(data.notes)
    assert "1 documents with no text" in notes and "2 queries have no relevant document" in notes
    assert "1 judged queries are not in the queries file" in notes and "1 judged documents are not in the corpus" in notes


@pytest.mark.parametrize(("corpus", "qrels", "message"), [
    (['{"_id": "a", "text": "x"}', "{broken"], "q\ta\t1\n", "corpus.jsonl line 2: not JSON"),
    ([{"_id": "a"}], "q\ta\t1\n", "corpus.jsonl line 1: no 'text' field"),
    ([{"_id": "a", "text": "x"}, {"_id": "a", "text": "y"}], "q\ta\t1\n", "line 2: the id 'a' appears twice"),
    ([{"_id": "a", "text": ["x"]}], "q\ta\t1\n", "'text' must be a string"),
    ([{"_id": "a", "text": "x"}], "query-id\tcorpus-id\tscore\nq\ta\thigh\n", "test.tsv line 2: the score must be an integer"),
    ([{"_id": "a", "text": "x"}], "q a 1\n", "separated by tabs"),
    ([{"_id": "a", "text": "x"}], "query-id\tcorpus-id\tscore\nq\tb\t0\n", "no query has a relevant document"),
])
def test_beir_errors_name_the_file_and_line(tmp_path: Path, corpus: list[object], qrels: str, message: str) -> None:
    folder = _beir(tmp_path, corpus, [{"_id": "q", "text": "query"}], qrels)
    with pytest.raises(EvalDataError, match=message):
        load_beir(folder)


def test_a_missing_split_names_the_splits_there(tmp_path: Path) -> None:
    write_beir(tmp_path)
    (tmp_path / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(EvalDataError, match="splits here: dev, test"):
        load_beir(tmp_path, "train")


def test_memories_become_the_same_shape(tmp_path: Path) -> None:
    _lines(tmp_path / "memories.jsonl", [{"id": "m1", "text": "likes dark roast"}, {"id": 2, "text": "hikes"}])
    _lines(tmp_path / "questions.jsonl", [
        {"id": "w1", "text": "What coffee?", "relevant": ["m1"]},
        {"id": "w2", "text": "Hobbies?", "relevant": {"2": 2, "m1": 0}},
        {"id": "w3", "text": "Nothing", "relevant": []},
    ])
    data = load_dataset(tmp_path)
    assert data.layout == "memories"
    assert data.doc_ids == ("m1", "2") and data.doc_texts == ("likes dark roast", "hikes")
    assert data.query_ids == ("w1", "w2") and data.qrels == {"w1": {"m1": 1}, "w2": {"2": 2, "m1": 0}}
    assert any("1 queries have no relevant document" in n for n in data.notes)


def test_memories_refuse_a_bad_relevant_field(tmp_path: Path) -> None:
    _lines(tmp_path / "memories.jsonl", [{"id": "m1", "text": "x"}])
    _lines(tmp_path / "questions.jsonl", [{"id": "w1", "text": "q", "relevant": "m1"}])
    with pytest.raises(EvalDataError, match="questions.jsonl line 1: 'relevant' must be a list of memory ids"):
        load_memories(tmp_path)


def test_both_layouts_of_the_labelled_set_agree(tmp_path: Path) -> None:
    beir, mem = load_dataset(write_beir(tmp_path / "b")), load_dataset(write_memories(tmp_path / "m"))
    docs, queries, qrels = build()
    assert beir.doc_ids == mem.doc_ids == tuple(docs)
    assert beir.doc_texts == tuple(f"{d['title']} {d['text']}" for d in docs.values())
    assert mem.doc_texts == tuple(d["text"] for d in docs.values())
    assert beir.query_texts == mem.query_texts == tuple(queries.values())
    assert beir.qrels == qrels and mem.qrels == {q: {d: 1 for d in rel} for q, rel in qrels.items()}


def test_a_folder_of_neither_layout_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="neither a BEIR set .* nor memories"):
        load_dataset(tmp_path)

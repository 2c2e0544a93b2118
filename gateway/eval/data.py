"""A labelled retrieval set in memory, read from the BEIR layout or from Mem0-style memories.

Both layouts become one :class:`Dataset` (documents, queries, graded judgements), so everything
after loading is the same whatever the user's data looked like.

* **BEIR** (what most public retrieval sets ship as): ``corpus.jsonl`` (``_id``, ``title``,
  ``text``), ``queries.jsonl`` (``_id``, ``text``), ``qrels/<split>.tsv`` (tab-separated, a header
  ``query-id corpus-id score``). A document's text is ``title + " " + text`` stripped, as BEIR's
  own models embed it.
* **Memories** (what a Mem0 user has): ``memories.jsonl`` (``id``, ``text``) and
  ``questions.jsonl`` (``id``, ``text``, ``relevant``: the ids of the memories that answer it, or
  an object of id -> grade for graded relevance).

Queries without a relevant document cannot be scored and are left out (and counted in
:attr:`Dataset.notes`), as are empty texts; a judgement naming an unknown document stays (it
counts as a relevant document nobody can retrieve, as trec_eval counts it).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Dataset", "EvalDataError", "load_beir", "load_dataset", "load_memories"]


class EvalDataError(ValueError):
    """The data folder cannot be read as a labelled set; the message names the file and line."""


@dataclass(frozen=True)
class Dataset:
    doc_ids: tuple[str, ...]
    doc_texts: tuple[str, ...]
    query_ids: tuple[str, ...]
    query_texts: tuple[str, ...]
    #: query id -> document id -> relevance grade (> 0 relevant), trec_eval's qrels shape
    qrels: dict[str, dict[str, int]]
    #: the layout it was read from: "beir" or "memories"
    layout: str = "beir"
    #: what was left out, in words (empty texts, queries without judgements)
    notes: tuple[str, ...] = field(default=())

    def summary(self) -> dict[str, Any]:
        judged = sum(1 for q in self.qrels.values() for g in q.values() if g > 0)
        return {"layout": self.layout, "documents": len(self.doc_ids), "queries": len(self.query_ids),
                "relevant_judgements": judged, "notes": list(self.notes)}


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; a clear error for anything else."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise EvalDataError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for n, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalDataError(f"{path.name} line {n}: not JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise EvalDataError(f"{path.name} line {n}: expected a JSON object, got {type(obj).__name__}")
            yield n, obj


def _field(obj: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise EvalDataError(f"{where}: no {key!r} field")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise EvalDataError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    return str(value)


def _texts(path: Path, id_key: str, *, title: bool) -> dict[str, str]:
    """id -> text of a JSONL file, ids unique; BEIR joins ``title + " " + text`` and strips."""
    out: dict[str, str] = {}
    for n, obj in _jsonl(path):
        where = f"{path.name} line {n}"
        key = _field(obj, id_key, where)
        if key in out:
            raise EvalDataError(f"{where}: the id {key!r} appears twice")
        text = _field(obj, "text", where)
        head = _field(obj, "title", where, required=False) if title else ""
        out[key] = (head + " " + text).strip() if head else text.strip()
    return out


def _qrels_tsv(path: Path) -> dict[str, dict[str, int]]:
    """BEIR's qrels: tab-separated ``query-id corpus-id score``, the first line a header."""
    qrels: dict[str, dict[str, int]] = {}
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise EvalDataError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for n, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise EvalDataError(f"{path.name} line {n}: expected query-id, corpus-id and score separated by tabs")
            try:
                grade = int(row[2])
            except ValueError:
                if n == 1:  # the header (BEIR writes `query-id corpus-id score`)
                    continue
                raise EvalDataError(f"{path.name} line {n}: the score must be an integer, got {row[2]!r}") from None
            qrels.setdefault(row[0].strip(), {})[row[1].strip()] = grade
    return qrels


def _assemble(
    docs: dict[str, str], queries: dict[str, str], qrels: dict[str, dict[str, int]], layout: str
) -> Dataset:
    """Keep what can be scored: non-empty documents, and queries with text and a relevant document."""
    notes = []
    empty_docs = [k for k, t in docs.items() if not t]
    if empty_docs:
        notes.append(f"{len(empty_docs)} documents with no text were left out")
    docs = {k: t for k, t in docs.items() if t}
    missing = [q for q in qrels if q not in queries]
    if missing:
        notes.append(f"{len(missing)} judged queries are not in the queries file (left out), e.g. {missing[0]!r}")
    unjudged = [q for q in queries if not any(g > 0 for g in qrels.get(q, {}).values())]
    if unjudged:
        notes.append(f"{len(unjudged)} queries have no relevant document and are not evaluated")
    empty_q = [q for q in queries if not queries[q] and q not in unjudged]
    if empty_q:
        notes.append(f"{len(empty_q)} queries with no text were left out")
    keep = [q for q in queries if q not in unjudged and queries[q]]
    unknown = {d for q in keep for d in qrels[q] if d not in docs}
    if unknown:
        notes.append(f"{len(unknown)} judged documents are not in the corpus (they count as relevant, never found)")
    if not docs:
        raise EvalDataError("the corpus has no document with text")
    if not keep:
        raise EvalDataError("no query has a relevant document: nothing to evaluate (check the qrels ids)")
    return Dataset(
        doc_ids=tuple(docs), doc_texts=tuple(docs.values()),
        query_ids=tuple(keep), query_texts=tuple(queries[q] for q in keep),
        qrels={q: dict(qrels[q]) for q in keep}, layout=layout, notes=tuple(notes),
    )


def load_beir(folder: Path, split: str = "test") -> Dataset:
    """A BEIR data set folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``)."""
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        raise EvalDataError(f"no {qrels_path}" + (f"; splits here: {', '.join(have)}" if have else ""))
    docs = _texts(folder / "corpus.jsonl", "_id", title=True)
    queries = _texts(folder / "queries.jsonl", "_id", title=False)
    return _assemble(docs, queries, _qrels_tsv(qrels_path), "beir")


def _relevant(obj: dict[str, Any], where: str) -> dict[str, int]:
    value = obj.get("relevant")
    if isinstance(value, list) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        return {str(v): 1 for v in value}
    if isinstance(value, dict) and all(isinstance(g, int) and not isinstance(g, bool) for g in value.values()):
        return {str(k): int(g) for k, g in value.items()}
    raise EvalDataError(f"{where}: 'relevant' must be a list of memory ids (or an object id -> integer grade)")


def load_memories(folder: Path) -> Dataset:
    """Mem0-style: ``memories.jsonl`` {id, text} and ``questions.jsonl`` {id, text, relevant}."""
    docs = _texts(folder / "memories.jsonl", "id", title=False)
    path = folder / "questions.jsonl"
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for n, obj in _jsonl(path):
        where = f"{path.name} line {n}"
        key = _field(obj, "id", where)
        if key in queries:
            raise EvalDataError(f"{where}: the id {key!r} appears twice")
        queries[key] = _field(obj, "text", where).strip()
        qrels[key] = _relevant(obj, where)
    return _assemble(docs, queries, qrels, "memories")


def load_dataset(folder: Path, split: str = "test") -> Dataset:
    """Whichever layout ``folder`` holds: BEIR (``corpus.jsonl``) or memories (``memories.jsonl``)."""
    if (folder / "corpus.jsonl").is_file():
        return load_beir(folder, split)
    if (folder / "memories.jsonl").is_file():
        return load_memories(folder)
    raise EvalDataError(
        f"{folder} holds neither a BEIR set (corpus.jsonl, queries.jsonl, qrels/{split}.tsv) "
        "nor memories (memories.jsonl, questions.jsonl)"
    )

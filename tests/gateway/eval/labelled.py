"""A labelled retrieval set whose relevance is known by construction, in both layouts eval reads.

Every topic owns words no other topic uses; each document is built from words of one topic, and
each query from words of one topic, so a document is relevant to a query exactly when they share
a word (graded by how many they share).
"""

from __future__ import annotations

import json
from pathlib import Path

TOPICS = [
    ["coffee", "espresso", "roast", "beans", "latte"],
    ["mountain", "hiking", "trail", "summit", "boots"],
    ["violin", "concert", "orchestra", "melody", "cello"],
    ["python", "compiler", "function", "variable", "syntax"],
    ["garden", "tomato", "seeds", "compost", "harvest"],
    ["ocean", "sailing", "harbor", "anchor", "waves"],
    ["chess", "opening", "bishop", "endgame", "castle"],
    ["winter", "snow", "skiing", "glacier", "frost"],
]

#: per topic, the documents (indices into the topic's words) and the queries
DOC_WORDS = [(0, 1, 2), (2, 3), (3, 4, 0)]
QUERY_WORDS = [(0, 2), (4,)]


def build() -> tuple[dict[str, dict[str, str]], dict[str, str], dict[str, dict[str, int]]]:
    """(documents id -> {title, text}, queries id -> text, qrels query -> document -> grade)."""
    docs: dict[str, dict[str, str]] = {}
    for t, words in enumerate(TOPICS):
        for j, pick in enumerate(DOC_WORDS):
            chosen = [words[i] for i in pick]
            docs[f"d{t}-{j}"] = {"title": chosen[0], "text": " ".join(chosen)}
    queries, qrels = {}, {}
    for t, words in enumerate(TOPICS):
        for j, pick in enumerate(QUERY_WORDS):
            qid = f"q{t}-{j}"
            wanted = {words[i] for i in pick}
            queries[qid] = "about " + " and ".join(sorted(wanted))
            qrels[qid] = {}
            for k, dpick in enumerate(DOC_WORDS):
                shared = len(wanted & {words[i] for i in dpick})
                if shared:
                    qrels[qid][f"d{t}-{k}"] = shared
    return docs, queries, qrels


def write_beir(folder: Path) -> Path:
    docs, queries, qrels = build()
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for i, d in docs.items():
            f.write(json.dumps({"_id": i, **d}) + "\n")
    with (folder / "queries.jsonl").open("w") as f:
        for i, q in queries.items():
            f.write(json.dumps({"_id": i, "text": q}) + "\n")
    with (folder / "qrels" / "test.tsv").open("w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, rel in qrels.items():
            for d, g in rel.items():
                f.write(f"{q}\t{d}\t{g}\n")
    return folder


def write_memories(folder: Path) -> Path:
    docs, queries, qrels = build()
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "memories.jsonl").open("w") as f:
        for i, d in docs.items():
            f.write(json.dumps({"id": i, "text": d["text"]}) + "\n")
    with (folder / "questions.jsonl").open("w") as f:
        for i, q in queries.items():
            f.write(json.dumps({"id": i, "text": q, "relevant": sorted(qrels[i])}) + "\n")
    return folder

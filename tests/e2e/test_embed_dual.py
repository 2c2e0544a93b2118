"""``embed-gateway embed --model A --model B``: one pass over the input fills one output per model.

A live gateway serves the A/B pair users run: a tiny jina-embeddings-v3 (task
``retrieval.passage``, 64 tokens at most) and a tiny BGE-M3 in the published layout (no tasks,
128 tokens). Every stored vector is compared with what the gateway answers for that model alone;
each collection's stamp names its own model, task and the space the gateway named. Resuming is
per model (one collection pre-filled by a one-model run), a store holding another space refuses
the whole run before anything is written to the other, and a row too long for one model is that
model's bad row only. Milvus Lite, Qdrant's local mode (both collections in one folder), a real
PostgreSQL with pgvector (tests/support/postgres.py) and Parquet files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from gateway.cli import main
from gateway.config import load_settings
from tests.e2e.test_embed_cli import texts, write_jsonl
from tests.support.postgres import postgres_server  # noqa: F401 - fixture
from tests.support.server import LiveServer, live_server

pytestmark = pytest.mark.slow

JINA, M3 = "jina-embeddings-v3", "bge-m3"
#: the derived collection of each model for ``--collection docs``
COLLECTIONS = {JINA: "docs_jina_embeddings_v3", M3: "docs_bge_m3"}
TASKS = {JINA: "retrieval.passage", M3: None}
DUAL = ["--model", JINA, "--model", M3, "--task", "retrieval.passage", "--task", "none"]
#: over jina's 64-token limit, within BGE-M3's 128
LONG = " ".join(["coffee"] * 90)


def settings(original_dir: Path, m3_dir: Path) -> Any:
    return load_settings(
        engines={"hf": {"model": str(original_dir), "device": "cpu", "max_input_tokens": 64}},
        models={
            JINA: {"default": True},
            M3: {"engines": {"bge": {"kind": "bge-m3", "model": str(m3_dir), "device": "cpu", "max_input_tokens": 128}}},
        },
        cache={"memory_bytes": 0},
    )


@pytest.fixture(scope="module")
def gateway(original_dir: Path, m3_dir: Path) -> Iterator[LiveServer]:
    with live_server(settings(original_dir, m3_dir)) as server:
        yield server


def served(url: str, model: str, docs: list[str]) -> tuple[np.ndarray, str]:
    """What the gateway answers for ``model`` alone, and the space it names."""
    body: dict[str, Any] = {"model": model, "input": docs}
    if TASKS[model]:
        body["task"] = TASKS[model]
    r = httpx.post(url + "/v1/embeddings", json=body, timeout=60)
    r.raise_for_status()
    data = sorted(r.json()["data"], key=lambda d: d["index"])
    return np.asarray([d["embedding"] for d in data], dtype=np.float32), r.headers["x-embed-space"]


def corpus(tmp_path: Path, n: int = 23) -> tuple[Path, list[str]]:
    docs = texts(n)
    return write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(docs)]), docs


def milvus(uri: str, collection: str) -> tuple[dict[str, Any] | None, dict[str, list[float]]]:
    """The collection's stamp and its vectors by id (None, {} when it does not exist)."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    try:
        if not client.has_collection(collection):
            return None, {}
        client.load_collection(collection)
        props = client.describe_collection(collection).get("properties", {})
        rows = client.query(collection, filter="line >= 0", output_fields=["id", "vector"])
        vectors = {r["id"]: r["vector"] for r in rows}
        assert len(vectors) == len(rows), "an id stored twice"
        return json.loads(props["embed_gateway.stamp"]), vectors
    finally:
        client.close()


def qdrant(path: str, collection: str) -> tuple[dict[str, Any], dict[str, list[float]]]:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=path)
    try:
        stamp = client.get_collection(collection).config.metadata["embed_gateway"]
        points = client.scroll(collection, limit=1000, with_vectors=True)[0]
        return stamp, {p.payload["id"]: p.vector["dense"] for p in points}
    finally:
        client.close()


def pgvector(dsn: str, table: str) -> tuple[dict[str, Any], dict[str, list[float]]]:
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        comment = conn.execute("SELECT obj_description(%s::regclass)", (table,)).fetchone()[0]
        rows = conn.execute(f"SELECT id, vector FROM {table}").fetchall()
    return json.loads(comment)["embed_gateway"], {r[0]: r[1].to_list() for r in rows}


def assert_model_vectors(url: str, model: str, docs: list[str], got: dict[str, list[float]]) -> str:
    want, space = served(url, model, docs)
    assert sorted(got) == sorted(f"d{i}" for i in range(len(docs)))
    np.testing.assert_allclose(np.asarray([got[f"d{i}"] for i in range(len(docs))]), want, atol=1e-5)
    return space


@pytest.mark.parametrize("store", ["milvus", "qdrant", "pgvector"])
def test_one_pass_fills_one_stamped_collection_per_model(gateway, tmp_path, capsys, store, request) -> None:  # type: ignore[no-untyped-def]
    src, docs = corpus(tmp_path)
    if store == "pgvector":
        where = request.getfixturevalue("postgres_server").database("dual")
        name = "--table"
    else:
        where, name = str(tmp_path / ("lite.db" if store == "milvus" else "qdrant")), "--collection"
    read = {"milvus": milvus, "qdrant": qdrant, "pgvector": pgvector}[store]
    rc = main(["embed", str(src), "--id-field", "id", "--gateway", gateway.url, *DUAL, f"--{store}", where,
               name, "docs", "--create-collection", "--batch-size", "5", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"{JINA}  task retrieval.passage  -> " in err and f"'{COLLECTIONS[M3]}'" in err, err  # the plan
    assert f"{JINA}: 23 rows embedded" in err and f"{M3}: 23 rows embedded" in err, err
    for model, collection in COLLECTIONS.items():
        stamp, vectors = read(where, collection)
        space = assert_model_vectors(gateway.url, model, docs, vectors)
        assert stamp is not None
        assert (stamp["model"], stamp["task"], stamp["space"]) == (model, TASKS[model] or "none", space)

    # run again: both collections hold every row, nothing is embedded twice
    assert main(["embed", str(src), "--id-field", "id", "--gateway", gateway.url, *DUAL, f"--{store}", where,
                 name, "docs", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"{JINA}: 0 rows embedded, 23 already stored" in err and f"{M3}: 0 rows embedded, 23 already stored" in err


def test_parquet_outputs_are_named_after_each_model(gateway, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    src, docs = corpus(tmp_path, 9)
    assert main(["embed", str(src), "--id-field", "id", "--gateway", gateway.url, *DUAL,
                 "--output", str(tmp_path / "v.parquet"), "--no-progress"]) == 0, capsys.readouterr().err
    for model in (JINA, M3):
        table = pq.read_table(tmp_path / f"v.{model.replace('-', '_')}.parquet")
        got = dict(zip(table.column("id").to_pylist(), table.column("vector").to_pylist(), strict=True))
        assert_model_vectors(gateway.url, model, docs, got)


def test_each_model_resumes_on_its_own(gateway, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    src, docs = corpus(tmp_path)
    half = write_jsonl(tmp_path / "half.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(docs[:12])])
    uri = str(tmp_path / "lite.db")
    # BGE-M3's collection is ahead: a one-model run (as before dual-write) stored the first 12 rows
    assert main(["embed", str(half), "--id-field", "id", "--gateway", gateway.url, "--model", M3, "--task", "none",
                 "--milvus", uri, "--collection", COLLECTIONS[M3], "--create-collection", "--no-progress"]) == 0
    capsys.readouterr()

    assert main(["embed", str(src), "--id-field", "id", "--gateway", gateway.url, *DUAL, "--milvus", uri,
                 "--collection", "docs", "--create-collection", "--batch-size", "4", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"{JINA}: 23 rows embedded, 0 already stored" in err, err
    assert f"{M3}: 11 rows embedded, 12 already stored" in err, err
    for model, collection in COLLECTIONS.items():
        _, vectors = milvus(uri, collection)  # each id once (milvus() checks), each vector the model's own
        assert_model_vectors(gateway.url, model, docs, vectors)


def test_another_space_in_one_store_refuses_the_whole_run(gateway, original_dir, tmp_path, tmp_path_factory,
                                                          capsys) -> None:  # type: ignore[no-untyped-def]
    from engine_hf.tools.bge_m3_checkpoint import write_bge_m3_checkpoint

    src, _ = corpus(tmp_path, 6)
    uri = str(tmp_path / "lite.db")
    # BGE-M3's collection was filled through a gateway whose bge-m3 has other weights: same name,
    # task and width, so only the space the gateway names tells them apart
    other = write_bge_m3_checkpoint(tmp_path_factory.mktemp("bge-m3-other"), seed=5)
    first = write_jsonl(tmp_path / "first.jsonl", [json.loads(x) for x in src.read_text().splitlines()[:3]])
    with live_server(settings(original_dir, other)) as old:
        assert main(["embed", str(first), "--id-field", "id", "--gateway", old.url, "--model", M3, "--task", "none",
                     "--milvus", uri, "--collection", COLLECTIONS[M3], "--create-collection", "--no-progress"]) == 0
    before = milvus(uri, COLLECTIONS[M3])
    capsys.readouterr()

    dual = ["embed", str(src), "--id-field", "id", "--gateway", gateway.url, *DUAL, "--milvus", uri,
            "--collection", "docs", "--create-collection", "--no-progress"]
    assert main(dual) == 2
    err = capsys.readouterr().err
    assert f"Milvus collection '{COLLECTIONS[M3]}'" in err and "differs in space" in err, err
    assert before[0] is not None and before[0]["space"] in err, err
    assert milvus(uri, COLLECTIONS[JINA]) == (None, {})  # jina's collection not even created
    assert milvus(uri, COLLECTIONS[M3]) == before

    # a store stamped with another model is refused as early, before a request is made
    assert main(["embed", str(src), "--id-field", "id", "--gateway", gateway.url, "--model", JINA,
                 "--milvus", uri, "--collection", "other_bge_m3", "--create-collection", "--no-progress"]) == 0
    capsys.readouterr()
    assert main([*dual[:-4], "--collection", "docs_a", "--collection", "other_bge_m3", "--create-collection",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "'other_bge_m3'" in err and "differs in model" in err, err
    assert milvus(uri, "docs_a") == (None, {})


def test_a_task_one_model_lacks_is_refused_before_anything_is_written(gateway, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    src, _ = corpus(tmp_path, 4)
    uri = str(tmp_path / "lite.db")
    # one --task for both: BGE-M3 has no retrieval.passage; jina's collection must not be started either
    assert main(["embed", str(src), "--gateway", gateway.url, "--model", JINA, "--model", M3, "--milvus", uri,
                 "--collection", "docs", "--create-collection", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"model {M3}: refused before anything was written: HTTP 400: unknown task 'retrieval.passage'" in err, err
    assert milvus(uri, COLLECTIONS[JINA]) == (None, {})


def test_a_row_too_long_for_one_model_is_that_models_bad_row(gateway, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    rows = [{"id": "a", "text": "likes coffee"}, {"id": "b", "text": LONG}, {"id": "c"},
            {"id": "d", "text": "dog cat park"}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    uri = str(tmp_path / "lite.db")
    base = ["embed", str(src), "--id-field", "id", "--gateway", gateway.url, *DUAL, "--milvus", uri,
            "--collection", "docs", "--create-collection", "--no-progress", "--batch-size", "2"]

    assert main(base) == 1
    err = capsys.readouterr().err
    assert "in.jsonl line 3: text field 'text' is missing" in err or f"line 2 (model {JINA})" in err, err

    report = tmp_path / "bad.jsonl"
    assert main([*base, "--skip-bad-rows", "--bad-rows", str(report)]) == 0
    err = capsys.readouterr().err
    assert f"{JINA}: 2 rows embedded" in err and "2 bad rows skipped" in err, err
    assert f"{M3}: 3 rows embedded" in err, err
    bad = sorted((b["model"], b["line"]) for b in map(json.loads, report.read_text().splitlines()))
    assert bad == [(M3, 3), (JINA, 2), (JINA, 3)]
    assert sorted(milvus(uri, COLLECTIONS[JINA])[1]) == ["a", "d"]
    assert sorted(milvus(uri, COLLECTIONS[M3])[1]) == ["a", "b", "d"]
    long_m3, _ = served(gateway.url, M3, [LONG])
    np.testing.assert_allclose(milvus(uri, COLLECTIONS[M3])[1]["b"], long_m3[0], atol=1e-5)


@pytest.mark.parametrize("flags, message", [
    (["--local", "/nowhere", "--model", "a", "--model", "b", "--output", "x.parquet"], "2 --model need --gateway"),
    (["--gateway", "http://127.0.0.1:9", "--model", "a", "--model", "b", "--milvus", "x.db", "--collection", "p",
      "--collection", "q", "--collection", "r"], "--collection is given 3 times for 2 --model"),
    (["--gateway", "http://127.0.0.1:9", "--model", "a", "--model", "b", "--qdrant", "q"],
     "--qdrant needs --collection: once per --model, or once as a prefix"),
    (["--gateway", "http://127.0.0.1:9", "--model", "a-b", "--model", "a_b", "--milvus", "x.db", "--collection",
      "p"], "would both write Milvus collection 'p_a_b'"),
    (["--gateway", "http://127.0.0.1:9", "--model", "a", "--task", "none", "--task", "none", "--output", "x.npy"],
     "--task is given 2 times for 1 --model"),
])
def test_flags_that_do_not_add_up_are_refused(tmp_path, capsys, flags, message) -> None:  # type: ignore[no-untyped-def]
    src, _ = corpus(tmp_path, 2)
    assert main(["embed", str(src), *flags]) == 1
    assert message in capsys.readouterr().err

"""The Qdrant and pgvector sinks (and the Milvus stamp) on real stores: a real PostgreSQL with
pgvector (tests/support/postgres.py), Qdrant through qdrant-client's local mode, Milvus Lite.

Hand-made records and vectors: the sparse path, the stamp, the ubinary bits (checked against the
gateway's own ``ubinary`` packing and numpy's Hamming distance), upserts replayed, rows refused.
"""

from __future__ import annotations

import itertools
import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from gateway.contract import SparseVector
from gateway.ingest.pgvector_sink import PgvectorSink
from gateway.ingest.plan import write_batch
from gateway.ingest.qdrant_sink import ID_NAMESPACE, QdrantSink, point_id, sign_vectors
from gateway.ingest.records import BadRecord, Record
from gateway.ingest.sinks import MilvusSink, RowsRejected
from gateway.ingest.stamp import Stamp, StampMismatchError
from gateway.serving.postprocess import pack_ubinary
from tests.support.postgres import PostgresServer, postgres_server  # noqa: F401 - fixture

STAMP = Stamp(model="jina-embeddings-v3", task="retrieval.passage", dimensions=None)
_db = itertools.count()


def recs(*lines: int) -> list[Record]:
    return [Record(n, f"doc-{n}", f"text {n}", {"n": n}) for n in lines]


def vecs(n: int, dims: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dims)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def sparse(n: int, vocab: int = 1000, seed: int = 0) -> list[SparseVector]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        idx = np.sort(rng.choice(vocab, size=5, replace=False)).astype(np.int64)
        out.append(SparseVector(idx, rng.uniform(0.01, 1, 5).astype(np.float32)))
    return out


@pytest.fixture
def dsn(postgres_server: PostgresServer) -> str:  # noqa: F811
    return postgres_server.database(f"sinks{next(_db)}")


@pytest.fixture
def qdrant_path(tmp_path: Path) -> str:
    return str(tmp_path / "qdrant")


def test_qdrant_create_upsert_resume_sparse(qdrant_path: str) -> None:
    with pytest.raises(ValueError, match="--create-collection"):
        QdrantSink(qdrant_path, "docs")
    sink = QdrantSink(qdrant_path, "docs", create=True, store_text=True, with_metadata=True, sparse=True, stamp=STAMP)
    assert sink.done(["doc-1"]) == set()
    v, sp = vecs(3), sparse(3)
    sink.write(recs(1, 2, 3), v, sp)
    sink.write(recs(2), v[1:2], sp[1:2])  # a replayed batch: overwritten, not duplicated
    assert sink.done(["doc-1", "doc-2", "doc-9"]) == {"doc-1", "doc-2"}
    assert "holds 3 points" in sink.finish()
    info = sink.client.get_collection("docs")
    assert info.config.params.vectors["dense"].size == 16
    assert info.config.params.vectors["dense"].distance.value == "Cosine"
    assert "sparse" in info.config.params.sparse_vectors
    assert info.config.metadata["embed_gateway"] == {"space": None, "model": "jina-embeddings-v3",
                                                     "task": "retrieval.passage", "dimensions": 16, "encoding": "float"}
    pid = str(uuid.uuid5(ID_NAMESPACE, "doc-2"))
    assert point_id("doc-2") == pid
    [p] = sink.client.retrieve("docs", [pid], with_vectors=True)
    assert p.payload == {"id": "doc-2", "line": 2, "text": "text 2", "metadata": {"n": 2}}
    np.testing.assert_allclose(p.vector["dense"], v[1], atol=1e-6)
    assert p.vector["sparse"].indices == sp[1].indices.tolist()
    np.testing.assert_allclose(p.vector["sparse"].values, sp[1].values, rtol=1e-6)
    # sparse search: the record whose sparse vector is the query comes first, scored by its dot product
    hits = sink.client.query_points("docs", query=sink.client.retrieve("docs", [pid], with_vectors=True)[0]
                                    .vector["sparse"], using="sparse", limit=3).points
    assert hits[0].payload["id"] == "doc-2"
    assert hits[0].score == pytest.approx(float(sp[1].values @ sp[1].values), rel=1e-5)
    sink.close()

    reopened = QdrantSink(qdrant_path, "docs", sparse=True, stamp=STAMP)
    assert reopened.done(["doc-3", "doc-4"]) == {"doc-3"}
    with pytest.raises(ValueError, match="stores 16-dim vectors but this run makes 8"):
        reopened.write(recs(4), vecs(1, dims=8), sparse(1))
    with pytest.raises(ValueError, match="has none"):
        reopened.write(recs(4), vecs(1), None)
    reopened.close()


def test_qdrant_stamp_mismatch_is_refused_before_anything_is_written(qdrant_path: str) -> None:
    sink = QdrantSink(qdrant_path, "docs", create=True, stamp=STAMP)
    sink.write(recs(1), vecs(1))
    sink.close()
    with pytest.raises(StampMismatchError) as err:
        QdrantSink(qdrant_path, "docs", stamp=Stamp("jina-embeddings-v3", "text-matching", 16))
    assert "task=retrieval.passage" in str(err.value) and "task=text-matching" in str(err.value)
    # the width is known only at the first write: refused there, before the upsert
    other_width = QdrantSink(qdrant_path, "docs", stamp=STAMP)
    with pytest.raises(ValueError, match="16-dim"):
        other_width.write(recs(2), vecs(1, dims=8))
    assert other_width.client.count("docs").count == 1
    other_width.close()


def test_qdrant_ubinary_round_trip_and_hamming_search(qdrant_path: str) -> None:
    dims = 64
    v = vecs(20, dims=dims, seed=3)
    sink = QdrantSink(qdrant_path, "bits", create=True, encoding="ubinary",
                      stamp=Stamp("m", "retrieval.passage", None, "ubinary"))
    sink.write(recs(*range(1, 21)), v)
    params = sink.client.get_collection("bits").config.params.vectors["dense"]
    assert params.distance.value == "Dot" and params.datatype.value == "float16"
    points = {p.payload["id"]: np.asarray(p.vector["dense"]) for p in
              sink.client.retrieve("bits", [point_id(f"doc-{n}") for n in range(1, 21)], with_vectors=True)}
    # the stored bits are exactly the gateway's ubinary bytes
    for n in range(1, 21):
        assert np.packbits(points[f"doc-{n}"] > 0).tobytes() == pack_ubinary(v[n - 1:n])[0].tobytes()
    bits = np.unpackbits(pack_ubinary(v), axis=1)
    query = vecs(1, dims=dims, seed=99)
    qbits = np.unpackbits(pack_ubinary(query), axis=1)[0]
    hamming = (bits != qbits).sum(axis=1)
    hits = sink.client.query_points("bits", query=sign_vectors(query)[0].tolist(), using="dense", limit=20).points
    got = [(h.payload["id"], round((dims - h.score) / 2)) for h in hits]  # dot of ±1 vectors = n - 2·hamming
    assert sorted(d for _, d in got) == sorted(hamming.tolist())
    assert all(d == hamming[int(i.split("-")[1]) - 1] for i, d in got)
    assert [d for _, d in got] == sorted(d for _, d in got)  # best (smallest Hamming distance) first
    sink.close()


def test_pgvector_create_upsert_resume_sparse(dsn: str) -> None:
    with pytest.raises(ValueError, match="--create-collection"):
        PgvectorSink(dsn, "docs")
    sink = PgvectorSink(dsn, "docs", create=True, store_text=True, with_metadata=True, sparse_vocab=1000, stamp=STAMP)
    v, sp = vecs(3), sparse(3)
    sink.write(recs(1, 2, 3), v, sp)
    sink.write(recs(2), v[1:2], sp[1:2])
    assert sink.done(["doc-1", "doc-2", "doc-9"]) == {"doc-1", "doc-2"}
    conn = sink.conn
    assert conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'docs'").fetchone()[0] == 1  # the key
    assert "holds 3 rows; HNSW index (vector_cosine_ops) built" in sink.finish()  # built once the load is done
    kinds = dict(conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                              "WHERE attrelid = 'docs'::regclass AND attnum > 0").fetchall())
    assert kinds == {"id": "text", "line": "bigint", "vector": "vector(16)", "text": "text", "metadata": "jsonb",
                     "sparse": "sparsevec(1000)"}
    indexes = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'docs'").fetchall()]
    assert any("USING hnsw (vector vector_cosine_ops)" in d for d in indexes), indexes
    comment = conn.execute("SELECT obj_description('docs'::regclass, 'pg_class')").fetchone()[0]
    assert json.loads(comment) == {"embed_gateway": {"space": None, "model": "jina-embeddings-v3",
                                                     "task": "retrieval.passage", "dimensions": 16, "encoding": "float"}}
    row = conn.execute("SELECT line, text, metadata, vector, sparse FROM docs WHERE id = 'doc-2'").fetchone()
    assert row[:3] == (2, "text 2", {"n": 2})
    np.testing.assert_allclose(row[3].to_numpy(), v[1], rtol=1e-6)
    assert row[4].indices() == sp[1].indices.tolist()
    np.testing.assert_allclose(row[4].values(), sp[1].values, rtol=1e-6)
    # cosine search with pgvector's own operator: a stored vector finds itself at distance 0
    best = conn.execute("SELECT id, vector <=> %s FROM docs ORDER BY vector <=> %s LIMIT 1", (v[2], v[2])).fetchone()
    assert best[0] == "doc-3" and best[1] == pytest.approx(0, abs=1e-6)
    # sparse search by inner product (<#> is its negative)
    top = conn.execute("SELECT id, -(sparse <#> (SELECT sparse FROM docs WHERE id = 'doc-1')) AS s FROM docs "
                       "ORDER BY s DESC LIMIT 1").fetchone()
    assert top[0] == "doc-1" and top[1] == pytest.approx(float(sp[0].values @ sp[0].values), rel=1e-5)
    sink.close()

    l2 = PgvectorSink(dsn, "docs", metric="L2", sparse_vocab=1000, stamp=STAMP)
    with pytest.raises(ValueError, match="indexed for another metric"):
        l2.write(recs(4), vecs(1), sparse(1))
    l2.close()
    reopened = PgvectorSink(dsn, "docs", sparse_vocab=1000, stamp=STAMP)
    with pytest.raises(ValueError, match=r"stores vector\(16\) but this run makes vector\(8\)"):
        reopened.write(recs(4), vecs(1, dims=8), sparse(1))
    out_of_vocab = [SparseVector(np.array([5, 1000], dtype=np.int64), np.array([1, 1], dtype=np.float32))]
    with pytest.raises(RowsRejected, match="outside the vocabulary"):
        reopened.write(recs(4), vecs(1), out_of_vocab)
    reopened.close()


def test_pgvector_refused_rows_are_reported_and_the_rest_written(dsn: str) -> None:
    sink = PgvectorSink(dsn, "docs", create=True, store_text=True, with_metadata=True, stamp=STAMP)
    rows = [Record(1, "a", "fine", {}), Record(2, "b\x00", "nul id", {}), Record(3, "c", "nul \x00 text", {}),
            Record(4, "d", "nan", {"x": float("nan")}), Record(5, "e", "fine too", {})]
    bad: list[BadRecord] = []
    assert write_batch(sink, rows, vecs(5), bad.append) == 2
    assert [(b.line, b.id) for b in bad] == [(2, "b\x00"), (3, "c"), (4, "d")]
    assert "NUL" in bad[0].reason and "NaN" in bad[2].reason
    assert sink.done(["a", "c", "e"]) == {"a", "e"}
    sink.close()


def test_pgvector_stamp_mismatch_is_refused_before_anything_is_written(dsn: str) -> None:
    sink = PgvectorSink(dsn, "docs", create=True, stamp=STAMP)
    sink.write(recs(1), vecs(1))
    sink.close()
    with pytest.raises(StampMismatchError, match="differs in model") as err:
        PgvectorSink(dsn, "docs", stamp=Stamp("another-model", "retrieval.passage", 16))
    assert "model=jina-embeddings-v3" in str(err.value) and "model=another-model" in str(err.value)
    with pytest.raises(StampMismatchError, match="encoding"):
        PgvectorSink(dsn, "docs", encoding="ubinary", stamp=Stamp("jina-embeddings-v3", "retrieval.passage", 16,
                                                                  "ubinary"))
    again = PgvectorSink(dsn, "docs", stamp=STAMP)
    assert again.conn.execute("SELECT count(*) FROM docs").fetchone()[0] == 1
    again.close()


def test_pgvector_ubinary_bits_and_hamming_search(dsn: str) -> None:
    dims = 64
    v = vecs(20, dims=dims, seed=5)
    sink = PgvectorSink(dsn, "bits", create=True, encoding="ubinary", stamp=Stamp("m", "retrieval.passage", None, "ubinary"))
    sink.write(recs(*range(1, 21)), v)
    assert "HNSW index (bit_hamming_ops) built" in sink.finish()
    conn = sink.conn
    assert conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'bits'::regclass "
                        "AND attname = 'vector'").fetchone()[0] == "bit(64)"
    indexes = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'bits'").fetchall()]
    assert any("USING hnsw (vector bit_hamming_ops)" in d for d in indexes), indexes
    stored = dict(conn.execute("SELECT id, vector FROM bits").fetchall())
    for n in range(1, 21):
        # psycopg reads bit(n) as its text form
        assert stored[f"doc-{n}"] == "".join(map(str, np.unpackbits(pack_ubinary(v[n - 1:n])[0])))
    from pgvector import Bit

    query = vecs(1, dims=dims, seed=77)
    qbits = np.unpackbits(pack_ubinary(query), axis=1)[0]
    want = (np.unpackbits(pack_ubinary(v), axis=1) != qbits).sum(axis=1)
    got = conn.execute("SELECT id, vector <~> %s AS d FROM bits ORDER BY d", (Bit(qbits.astype(bool)),)).fetchall()
    assert [int(d) for _, d in got] == sorted(want.tolist())
    assert all(int(d) == want[int(i.split("-")[1]) - 1] for i, d in got)
    sink.close()


def test_milvus_is_stamped_and_refuses_another_space(tmp_path: Path) -> None:
    uri = str(tmp_path / "lite.db")
    sink = MilvusSink(uri, "docs", create=True, stamp=STAMP)
    sink.write(recs(1), vecs(1))
    props = sink.client.describe_collection("docs")["properties"]
    assert json.loads(props["embed_gateway.stamp"])["dimensions"] == 16
    with pytest.raises(RowsRejected, match="longer than 512"):
        sink.write([Record(2, "x" * 600, "t")], vecs(1))
    sink.close()
    with pytest.raises(StampMismatchError, match="differs in task"):
        MilvusSink(uri, "docs", stamp=Stamp("jina-embeddings-v3", "classification", None))
    # a collection made without a stamp (an older version) is adopted: stamped at the next write
    plain = MilvusSink(uri, "plain", create=True)
    plain.write(recs(1), vecs(1))
    assert "embed_gateway.stamp" not in (plain.client.describe_collection("plain").get("properties") or {})
    plain.close()
    adopted = MilvusSink(uri, "plain", stamp=STAMP)
    adopted.write(recs(2), vecs(1))
    assert json.loads(adopted.client.describe_collection("plain")["properties"]["embed_gateway.stamp"])["task"] == \
        "retrieval.passage"
    adopted.close()

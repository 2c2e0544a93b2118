"""Sinks: atomic batches, "which ids do you hold?", final assembly; Milvus on a real Lite file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gateway.ingest.records import Record
from gateway.ingest.sinks import MilvusSink, NpySink, ParquetSink


def recs(*lines: int) -> list[Record]:
    return [Record(n, f"id{n}", f"text {n}", {"n": n}) for n in lines]


def vecs(n: int, dims: int = 4, start: float = 0.0) -> np.ndarray:
    return (np.arange(n * dims, dtype=np.float32).reshape(n, dims) + start) / 10


def test_parquet_resume_and_final_order(tmp_path: Path) -> None:
    out = tmp_path / "v.parquet"
    sink = ParquetSink(out, store_text=True, with_metadata=True)
    sink.write(recs(5, 6), vecs(2, start=50))
    sink.write(recs(1, 2), vecs(2))
    (out.with_name("v.parquet.parts") / ".part-x.parquet.tmp").write_text("half-written")
    # a new process: the parts are the resume state
    again = ParquetSink(out, store_text=True, with_metadata=True)
    assert again.done(["id1", "id2", "id3", "id6"]) == {"id1", "id2", "id6"}
    assert not list(out.with_name("v.parquet.parts").glob(".*.tmp"))
    with pytest.raises(ValueError, match="stored 4-dim vectors but this run makes 8"):
        again.write(recs(3), vecs(1, dims=8))
    again.write(recs(3), vecs(1, start=30))
    assert "wrote 5 rows" in again.finish()
    table = pq.read_table(out)
    assert table.column("line").to_pylist() == [1, 2, 3, 5, 6]
    assert table.column("id").to_pylist() == ["id1", "id2", "id3", "id5", "id6"]
    assert table.schema.field("vector").type.list_size == 4
    np.testing.assert_allclose(np.array(table.column("vector").to_pylist()[3]), vecs(1, start=50)[0])
    assert json.loads(table.column("metadata")[0].as_py()) == {"n": 1}
    assert table.column("text")[2].as_py() == "text 3"
    assert not out.with_name("v.parquet.parts").exists()
    with pytest.raises(FileExistsError, match="--overwrite"):
        ParquetSink(out)
    ParquetSink(out, overwrite=True)
    assert not out.exists()


def test_npy_with_ids(tmp_path: Path) -> None:
    out = tmp_path / "v.npy"
    sink = NpySink(out)
    sink.write(recs(3), vecs(1, start=3))
    sink.write(recs(1, 2), vecs(2))
    sink.finish()
    m = np.load(out)
    assert m.dtype == np.float32 and m.shape == (3, 4)
    np.testing.assert_allclose(m[2], vecs(1, start=3)[0])
    assert json.loads((tmp_path / "v.ids.json").read_text()) == ["id1", "id2", "id3"]


def test_milvus_lite_create_resume_upsert(tmp_path: Path) -> None:
    uri = str(tmp_path / "lite.db")
    with pytest.raises(ValueError, match="--create-collection"):
        MilvusSink(uri, "docs")
    sink = MilvusSink(uri, "docs", create=True, metric="COSINE", store_text=True, with_metadata=True)
    assert sink.done(["id1"]) == set()  # no collection yet: nothing stored
    sink.write(recs(1, 2, 3), vecs(3, dims=8, start=1))
    sink.write(recs(2), vecs(1, dims=8, start=1))  # the same id again (a batch replayed): upsert, no duplicate
    assert sink.done(["id1", "id2", "id4"]) == {"id1", "id2"}
    sink.finish()
    desc = sink.client.describe_collection("docs")
    fields = {f["name"]: f for f in desc["fields"]}
    assert fields["vector"]["params"]["dim"] == 8 and set(fields) == {"id", "vector", "line", "text", "metadata"}
    index = sink.client.describe_index("docs", sink.client.list_indexes("docs")[0])
    assert index["metric_type"] == "COSINE"
    rows = sink.client.query("docs", filter="line >= 0", output_fields=["id", "line", "text", "metadata", "vector"])
    assert sorted(r["id"] for r in rows) == ["id1", "id2", "id3"]
    row3 = next(r for r in rows if r["id"] == "id3")
    assert row3["text"] == "text 3" and row3["metadata"] == {"n": 3}
    np.testing.assert_allclose(np.array(row3["vector"], dtype=np.float32), vecs(3, dims=8, start=1)[2], rtol=1e-6)
    sink.close()

    reopened = MilvusSink(uri, "docs", store_text=True, with_metadata=True)
    assert reopened.done(["id3", "id9"]) == {"id3"}
    with pytest.raises(ValueError, match="stores 8-dim vectors but this run makes 4"):
        reopened.write(recs(9), vecs(1, dims=4))
    # collections embed-gateway did not create are checked, not written into blindly
    reopened.client.create_collection("quick", dimension=4)  # pymilvus quick setup: INT64 id
    reopened.client.create_collection("mem0like", dimension=4, primary_field_name="id", vector_field_name="vectors",
                                      id_type="string", max_length=64)
    with pytest.raises(ValueError, match="VARCHAR primary key"):
        MilvusSink(uri, "quick").write(recs(1), vecs(1))
    with pytest.raises(ValueError, match="no 'id'/'vector' fields"):
        MilvusSink(uri, "mem0like").write(recs(1), vecs(1))
    reopened.close()

"""Where vectors go: Parquet, ``.npy``, or a Milvus collection (Lite file or server); Qdrant and
Postgres/pgvector live in :mod:`~gateway.ingest.qdrant_sink` and :mod:`~gateway.ingest.pgvector_sink`.

Every sink answers :meth:`done` — which of these ids do you already hold? — and writes each batch
atomically, so an interrupted run resumes without duplicates (see :mod:`gateway.ingest.plan`).
File sinks write one Parquet part per batch into ``OUTPUT.parts/`` (temporary name, then rename)
and assemble the final file, rows in input order, when the run completes. The store sinks upsert
by record id, so even a batch written twice is stored once, and stamp what they create with the
run's vector space (:mod:`gateway.ingest.stamp`).

A batch may carry one sparse vector per record (``sparse``: vocabulary ids -> weights, the
contract's :class:`~gateway.contract.SparseVector`) for hybrid search; the Milvus, Qdrant and
pgvector sinks store it beside the dense vector, the file sinks refuse it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from gateway.contract import SparseVector
from gateway.ingest.records import Record
from gateway.ingest.stamp import STAMP_KEY, Stamp, StampedStore, check_stamp

__all__ = ["MilvusSink", "NpySink", "ParquetSink", "RowsRejected", "Sink", "SinkError", "no_sparse"]


class SinkError(RuntimeError):
    """The store refused (Milvus unreachable, a Lite file locked by another process, a schema clash)."""


class RowsRejected(Exception):
    """Rows of a batch the store cannot hold (batch index -> reason); nothing of the batch was
    written, so the caller reports those rows and writes the rest (:func:`gateway.ingest.plan.write_batch`)."""

    def __init__(self, reasons: dict[int, str]) -> None:
        super().__init__("; ".join(f"input[{i}]: {r}" for i, r in sorted(reasons.items())))
        self.reasons = reasons


class Sink(Protocol):
    def done(self, ids: Sequence[str]) -> set[str]: ...

    def write(
        self,
        records: Sequence[Record],
        vectors: npt.NDArray[np.float32],
        sparse: Sequence[SparseVector] | None = None,
    ) -> None:
        """Store one batch atomically (or raise :class:`RowsRejected` before writing any of it)."""
        ...

    def preflight(self, dims: int, space: str | None) -> None:
        """Raise what the first write of ``dims``-wide vectors in vector space ``space`` (None:
        unknown) would raise, writing nothing (:class:`~gateway.ingest.stamp.StampMismatchError`
        for another space, ``ValueError`` for another width)."""
        ...

    def finish(self) -> str:
        """Complete the output; returns a sentence saying where it is."""
        ...

    def close(self) -> None: ...


def no_sparse(sink: str, sparse: Sequence[SparseVector] | None) -> None:
    if sparse is not None:
        raise ValueError(f"{sink} holds dense vectors only; sparse vectors go to --milvus, --qdrant or --pgvector")


class _Parts:
    """Parquet parts of an unfinished run: the resume state of the file sinks."""

    def __init__(self, final: Path, *, overwrite: bool, store_text: bool, with_metadata: bool) -> None:
        self.final = final
        self.dir = final.with_name(final.name + ".parts")
        self.store_text, self.with_metadata = store_text, with_metadata
        if final.exists():
            if not overwrite:
                raise FileExistsError(f"{final} already exists (a finished run); pass --overwrite to replace it")
            final.unlink()
        if overwrite and self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        for stray in self.dir.glob(".*.tmp"):  # a write killed half-way
            stray.unlink()
        self.ids: set[str] = set()
        self.dims: int | None = None
        import pyarrow.parquet as pq

        for part in sorted(self.dir.glob("part-*.parquet")):
            table = pq.read_table(part, columns=["id", "vector"])
            self.ids.update(table.column("id").to_pylist())
            self.dims = table.schema.field("vector").type.list_size

    def check(self, dims: int) -> None:
        """The parts already stored hold ``dims``-wide vectors too (raises otherwise)."""
        if self.dims is not None and dims != self.dims:
            raise ValueError(
                f"the unfinished run in {self.dir} stored {self.dims}-dim vectors but this run makes {dims}; "
                "use the same --dimensions, or --overwrite to start again"
            )

    def write(self, records: Sequence[Record], vectors: npt.NDArray[np.float32]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        dims = int(vectors.shape[1])
        self.check(dims)
        self.dims = dims
        columns: dict[str, Any] = {
            "id": pa.array([r.id for r in records], pa.string()),
            "line": pa.array([r.line for r in records], pa.int64()),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), pa.float32()), dims
            ),
        }
        if self.store_text:
            columns["text"] = pa.array([r.text for r in records], pa.string())
        if self.with_metadata:
            columns["metadata"] = pa.array([json.dumps(r.metadata, default=str) for r in records], pa.string())
        name = f"part-{records[0].line:012d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.dir / f".{name}.tmp"
        pq.write_table(pa.table(columns), tmp)
        os.replace(tmp, self.dir / name)
        self.ids.update(r.id for r in records)

    def table(self) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = sorted(self.dir.glob("part-*.parquet"))
        if not parts:
            fields = [pa.field("id", pa.string()), pa.field("line", pa.int64()),
                      pa.field("vector", pa.list_(pa.float32(), self.dims or -1))]
            if self.store_text:
                fields.append(pa.field("text", pa.string()))
            if self.with_metadata:
                fields.append(pa.field("metadata", pa.string()))
            return pa.schema(fields).empty_table()
        table = pa.concat_tables([pq.read_table(p) for p in parts])
        return table.sort_by("line")

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class _PartsSink:
    """A sink that collects rows in resumable ``_Parts`` and writes the file once at the end."""

    parts: _Parts

    def done(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self.parts.ids}

    def write(self, records: Sequence[Record], vectors: npt.NDArray[np.float32],
              sparse: Sequence[SparseVector] | None = None) -> None:
        no_sparse("a file output", sparse)
        self.parts.write(records, vectors)

    def preflight(self, dims: int, space: str | None) -> None:
        self.parts.check(dims)

    def close(self) -> None:
        return None


class ParquetSink(_PartsSink):
    """``OUTPUT.parquet`` with columns id, line, vector (fixed-size float32 list), [text], [metadata JSON]."""

    def __init__(self, path: Path, *, overwrite: bool = False, store_text: bool = False, with_metadata: bool = False) -> None:
        self.path = path
        self.parts = _Parts(path, overwrite=overwrite, store_text=store_text, with_metadata=with_metadata)


    def finish(self) -> str:
        import pyarrow.parquet as pq

        table = self.parts.table()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.path)
        self.parts.discard()
        return f"wrote {table.num_rows} rows to {self.path}"


class NpySink(_PartsSink):
    """``OUTPUT.npy`` (float32, one row per record in input order) + ``OUTPUT.ids.json`` (the ids, same order)."""

    def __init__(self, path: Path, *, overwrite: bool = False) -> None:
        self.path = path
        self.ids_path = path.with_suffix(".ids.json")
        if overwrite and self.ids_path.exists():
            self.ids_path.unlink()
        self.parts = _Parts(path, overwrite=overwrite, store_text=False, with_metadata=False)


    def finish(self) -> str:
        table = self.parts.table()
        dims = self.parts.dims or 0
        flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        matrix = np.asarray(flat, dtype=np.float32).reshape(table.num_rows, dims)
        tmp = self.path.with_name(f".{self.path.stem}.tmp.npy")
        np.save(tmp, matrix)
        self.ids_path.write_text(json.dumps(table.column("id").to_pylist()))
        os.replace(tmp, self.path)
        self.parts.discard()
        return f"wrote {matrix.shape[0]} x {dims} float32 to {self.path} (ids in {self.ids_path.name})"


@contextmanager
def _milvus_errors(what: str) -> Iterator[None]:
    """pymilvus raises its own exception tree; the CLI reports one error class with the cause."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        cause = exc.__cause__ or exc.__context__
        detail = f"{exc.message}" + (f" ({cause})" if cause is not None else "")
        raise SinkError(f"{what}: {detail}") from exc


class MilvusSink(StampedStore):
    """Upserts into ``collection``: id VARCHAR primary key, vector FLOAT_VECTOR(dim), line, [text],
    [metadata JSON], [sparse SPARSE_FLOAT_VECTOR].

    ``uri``: a Milvus Lite file (``./vectors.db``) or a server (``http://host:19530``). The
    collection is created on the first write when ``create`` is set (dimension from the vectors,
    index ``index_type`` with ``metric``); an existing one must have a matching ``vector`` field.
    ``stamp``: the run's vector space, kept as the collection property ``embed_gateway.stamp`` (a
    JSON object); a collection stamped with another space is refused before anything is written.
    ``sparse``: each record also has a sparse vector (field ``sparse``, a ``SPARSE_INVERTED_INDEX``
    searched by inner product, as BGE-M3's lexical weights are scored).
    """

    #: the sparse vector field
    SPARSE = "sparse"
    #: the collection property holding the stamp (JSON)
    STAMP_PROPERTY = f"{STAMP_KEY}.stamp"
    #: the ``id`` field's VARCHAR length
    MAX_ID = 512

    def __init__(
        self,
        uri: str,
        collection: str,
        *,
        token: str | None = None,
        db_name: str = "",
        create: bool = False,
        metric: str = "COSINE",
        index_type: str = "AUTOINDEX",
        store_text: bool = False,
        with_metadata: bool = False,
        stamp: Stamp | None = None,
        sparse: bool = False,
    ) -> None:
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:
            raise RuntimeError("Milvus output needs the ingest extra: pip install 'embed-gateway[ingest]'") from exc
        self.uri, self.collection = uri, collection
        self.create, self.metric, self.index_type = create, metric, index_type
        self.store_text, self.with_metadata, self.sparse = store_text, with_metadata, sparse
        with _milvus_errors(f"cannot open Milvus at {uri}"):
            self.client = MilvusClient(uri=uri, token=token or "", db_name=db_name)
            self.exists = self.client.has_collection(collection)
            if self.exists:
                # a Milvus Lite file left by a killed process reopens "released"; queries need it loaded
                self.client.load_collection(collection)
        if not self.exists and not create:
            raise ValueError(f"Milvus collection {collection!r} does not exist at {uri}; pass --create-collection")
        self.checked_dims: int | None = None
        self.stamp = stamp
        try:
            self.stored_stamp = self._read_stamp() if self.exists else None
            if stamp is not None:
                check_stamp(self._where, self.stored_stamp, stamp)  # before anything is embedded
        except BaseException:
            self.client.close()  # a Lite file stays locked while its client is open
            raise

    @property
    def _where(self) -> str:
        return f"Milvus collection {self.collection!r} at {self.uri}"

    def _read_stamp(self) -> Stamp | None:
        with _milvus_errors(f"cannot describe Milvus collection {self.collection!r}"):
            props = self.client.describe_collection(self.collection).get("properties") or {}
        raw = props.get(self.STAMP_PROPERTY)
        return Stamp.from_json(raw) if raw else None

    def _write_stamp(self, stamp: Stamp) -> None:
        with _milvus_errors(f"cannot stamp Milvus collection {self.collection!r}"):
            self.client.alter_collection_properties(self.collection, properties={self.STAMP_PROPERTY: stamp.to_json()})

    def _check_existing(self, dims: int) -> None:
        desc = self.client.describe_collection(self.collection)
        fields = {f["name"]: f for f in desc.get("fields", [])}
        vec = fields.get("vector")
        if vec is None or "id" not in fields:
            raise ValueError(
                f"Milvus collection {self.collection!r} has no 'id'/'vector' fields (it has {', '.join(fields)}); "
                "choose another --collection (embed-gateway creates its own with --create-collection)"
            )
        from pymilvus import DataType

        if fields["id"].get("type") != DataType.VARCHAR or not fields["id"].get("is_primary"):
            raise ValueError(
                f"Milvus collection {self.collection!r}: 'id' must be a VARCHAR primary key (ids here are strings); "
                "choose another --collection"
            )
        have = int(vec.get("params", {}).get("dim", -1))
        if have != dims:
            raise ValueError(
                f"Milvus collection {self.collection!r} stores {have}-dim vectors but this run makes {dims}; "
                "use --dimensions to match, or another collection"
            )
        if self.sparse and fields.get(self.SPARSE, {}).get("type") != DataType.SPARSE_FLOAT_VECTOR:
            raise ValueError(f"Milvus collection {self.collection!r} has no SPARSE_FLOAT_VECTOR field {self.SPARSE!r}; "
                             "write sparse vectors to a collection created with them (another --collection)")
        dynamic = bool(desc.get("enable_dynamic_field"))
        for wanted, on in (("text", self.store_text), ("metadata", self.with_metadata)):
            if on and wanted not in fields and not dynamic:
                raise ValueError(f"Milvus collection {self.collection!r} has no {wanted!r} field")

    def _create(self, dims: int, stamp: Stamp | None) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dims)
        schema.add_field("line", DataType.INT64)
        if self.store_text:
            schema.add_field("text", DataType.VARCHAR, max_length=65535)
        if self.with_metadata:
            schema.add_field("metadata", DataType.JSON)
        if self.sparse:
            schema.add_field(self.SPARSE, DataType.SPARSE_FLOAT_VECTOR)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type=self.index_type, metric_type=self.metric)
        if self.sparse:
            index.add_index(field_name=self.SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        props = {self.STAMP_PROPERTY: stamp.to_json()} if stamp is not None else {}
        self.client.create_collection(self.collection, schema=schema, index_params=index, properties=props)

    def done(self, ids: Sequence[str]) -> set[str]:
        if not self.exists or not ids:
            return set()
        with _milvus_errors(f"Milvus query on {self.collection!r} failed"):
            rows = self.client.query(self.collection, filter=f"id in {json.dumps(list(ids))}", output_fields=["id"])
        return {r["id"] for r in rows}

    def write(self, records: Sequence[Record], vectors: npt.NDArray[np.float32],
              sparse: Sequence[SparseVector] | None = None) -> None:
        if sparse is not None and not self.sparse:
            raise ValueError("sparse vectors given but the Milvus sink was opened without sparse=True")
        if sparse is None and self.sparse:
            raise ValueError("this Milvus sink stores a sparse vector per record, and the batch has none")
        refused = {i: f"id longer than {self.MAX_ID} bytes (the Milvus id field's VARCHAR length)"
                   for i, r in enumerate(records) if len(r.id.encode()) > self.MAX_ID}
        for i, v in enumerate(sparse or ()):
            if not np.any(v.values != 0):  # Milvus refuses a sparse vector without a nonzero weight
                refused.setdefault(i, "the model gave this text no sparse weight, and a Milvus sparse field cannot "
                                      "hold an empty vector")
        if refused:
            raise RowsRejected(refused)
        self._ensure(int(vectors.shape[1]))
        rows = []
        for i, (r, v) in enumerate(zip(records, vectors, strict=True)):
            row: dict[str, Any] = {"id": r.id, "vector": v.tolist(), "line": r.line}
            if sparse is not None:
                row[self.SPARSE] = sparse[i].as_dict()
            if self.store_text:
                row["text"] = r.text
            if self.with_metadata:
                row["metadata"] = json.loads(json.dumps(r.metadata, default=str))
            rows.append(row)
        with _milvus_errors(f"Milvus upsert into {self.collection!r} failed"):
            self.client.upsert(self.collection, rows)

    def finish(self) -> str:
        if not self.exists:
            return f"nothing to store; Milvus collection {self.collection!r} was not created"
        self.client.flush(self.collection)
        stats = self.client.get_collection_stats(self.collection)
        return f"Milvus collection {self.collection!r} at {self.uri} holds {stats.get('row_count')} rows"

    def close(self) -> None:
        self.client.close()

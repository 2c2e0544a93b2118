"""``embed --pgvector DSN --table NAME``: upsert rows into a Postgres table with pgvector.

One batch is one transaction (``INSERT ... ON CONFLICT (id) DO UPDATE``), so a run killed at any
point leaves whole batches, and a replayed batch overwrites its own rows. The table is created on
the first write with ``vector(d)``, or, for ``ubinary``, ``bit(d)`` (the gateway's ``ubinary``
bits). Its HNSW index (the metric's operator class; ``bit_hamming_ops`` for Hamming distance,
``<~>``) is built when the run finishes, as pgvector advises for bulk loads: maintaining an HNSW
graph row by row costs far more than building it once (measured in docs/ingestion.md). A table
that already has the index is written into as is. With ``sparse_vocab`` a ``sparsevec(vocab)`` column holds each record's sparse vector
(not indexed: pgvector's HNSW takes at most 1,000 non-zero entries, which long passages exceed).
The stamp is the table's comment, ``{"embed_gateway": {...}}``, written in the same transaction
that creates the table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.contract import SparseVector
from gateway.ingest.records import Record
from gateway.ingest.sinks import RowsRejected, SinkError
from gateway.ingest.stamp import STAMP_KEY, Stamp, StampedStore, check_stamp

__all__ = ["PgvectorSink"]

#: --metric -> (HNSW operator class, distance operator) for float vectors
_OPS = {"COSINE": ("vector_cosine_ops", "<=>"), "IP": ("vector_ip_ops", "<#>"), "L2": ("vector_l2_ops", "<->")}
#: pgvector's HNSW limit for vector(d)
_HNSW_MAX_DIMS = 2000


@contextmanager
def _errors(what: str) -> Iterator[None]:
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        raise SinkError(f"{what}: {str(exc).strip()}") from exc


def _row_problem(r: Record, *, store_text: bool, with_metadata: bool) -> str | None:
    """Why Postgres would refuse this row (its text types hold no NUL, its JSON no NaN), or None."""
    if "\x00" in r.id:
        return "the id contains a NUL character, which Postgres text cannot hold"
    if store_text and "\x00" in r.text:
        return "the text contains a NUL character, which Postgres text cannot hold"
    if with_metadata:
        try:
            encoded = json.dumps(r.metadata, default=str, allow_nan=False)
        except ValueError:
            return "the metadata holds NaN or Infinity, which Postgres JSON cannot hold"
        if "\\u0000" in encoded:
            return "the metadata contains a NUL character, which Postgres JSON cannot hold"
    return None


class PgvectorSink(StampedStore):
    """Upserts into ``table`` (``name`` or ``schema.name``): ``id`` text primary key, ``line`` bigint,
    ``vector`` vector(d) or bit(d), [``text``], [``metadata`` jsonb], [``sparse`` sparsevec(vocab)].

    ``dsn``: a libpq connection string or URI (``postgresql://user:pw@host:5432/db``). The
    ``vector`` extension is created when missing if ``create`` is set (that needs the right to).
    """

    def __init__(
        self,
        dsn: str,
        table: str,
        *,
        create: bool = False,
        metric: str = "COSINE",
        encoding: str = "float",
        sparse_vocab: int | None = None,
        store_text: bool = False,
        with_metadata: bool = False,
        stamp: Stamp | None = None,
    ) -> None:
        try:
            import psycopg
            from psycopg import sql
        except ImportError as exc:
            raise RuntimeError("pgvector output needs the stores extra: pip install 'embed-gateway[stores]'") from exc
        if metric not in _OPS:
            raise ValueError(f"--metric must be one of {', '.join(_OPS)}, not {metric!r}")
        if encoding not in ("float", "ubinary"):
            raise ValueError(f"encoding must be float or ubinary, not {encoding!r}")
        if stamp is not None and stamp.encoding != encoding:
            raise ValueError(f"the stamp says {stamp.encoding} but the sink writes {encoding}")
        if sparse_vocab is not None and sparse_vocab < 1:
            raise ValueError("sparse_vocab must be >= 1 (the sparse model's vocabulary size)")
        self.table, self.create, self.metric, self.encoding = table, create, metric, encoding
        self.sparse_vocab, self.store_text, self.with_metadata = sparse_vocab, store_text, with_metadata
        self.stamp = stamp
        self.ident = sql.Identifier(*table.split(".", 1))
        with _errors("cannot connect to Postgres"):
            self.conn = psycopg.connect(dsn, autocommit=True)
        try:
            self._prepare_extension()
            self.qualified = self.ident.as_string(self.conn)
            self.exists = self._regclass() is not None
            if not self.exists and not create:
                raise ValueError(f"table {table!r} does not exist; pass --create-collection")
            self.stored_stamp = self._read_stamp() if self.exists else None
            if stamp is not None:
                check_stamp(self._where, self.stored_stamp, stamp)  # before anything is embedded
        except BaseException:
            self.conn.close()
            raise
        self.checked_dims: int | None = None

    @property
    def _where(self) -> str:
        return f"Postgres table {self.table!r}"

    def _prepare_extension(self) -> None:
        from pgvector.psycopg import register_vector

        with _errors("cannot read Postgres extensions"):
            have = self.conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
        if have is None:
            if not self.create:
                raise ValueError("the Postgres database has no pgvector extension: CREATE EXTENSION vector "
                                 "(or pass --create-collection to create it)")
            with _errors("cannot create the pgvector extension (CREATE EXTENSION vector)"):
                self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(self.conn)

    def _regclass(self) -> int | None:
        with _errors(f"cannot look up table {self.table!r}"):
            row = self.conn.execute("SELECT to_regclass(%s)::oid", (self.qualified,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _read_stamp(self) -> Stamp | None:
        with _errors(f"cannot read the comment of table {self.table!r}"):
            row = self.conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (self.qualified,)).fetchone()
        comment = row[0] if row else None
        if not comment:
            return None
        try:
            return Stamp.from_dict(json.loads(comment)[STAMP_KEY])
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"table {self.table!r} has a comment that is not an embed-gateway stamp ({comment[:80]!r}); "
                "choose another --table"
            ) from None

    def _columns(self) -> dict[str, str]:
        with _errors(f"cannot read the columns of table {self.table!r}"):
            rows = self.conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped", (self.qualified,)
            ).fetchall()
        return {str(name): str(kind) for name, kind in rows}

    def _vector_type(self, dims: int) -> str:
        return f"bit({dims})" if self.encoding == "ubinary" else f"vector({dims})"

    def _write_stamp(self, stamp: Stamp) -> None:
        with _errors(f"cannot stamp table {self.table!r}"):
            self.conn.execute(self._comment(stamp))

    def _comment(self, stamp: Stamp) -> Any:
        from psycopg import sql

        return sql.SQL("COMMENT ON TABLE {} IS {}").format(self.ident, sql.Literal(json.dumps({STAMP_KEY: stamp.to_dict()})))

    def _check_existing(self, dims: int) -> None:
        cols = self._columns()
        if "id" not in cols or "vector" not in cols:
            raise ValueError(
                f"table {self.table!r} has no 'id'/'vector' columns (it has {', '.join(cols)}); choose another "
                "--table (embed-gateway creates its own with --create-collection)"
            )
        if cols["vector"] != self._vector_type(dims):
            raise ValueError(
                f"table {self.table!r} stores {cols['vector']} but this run makes {self._vector_type(dims)}; "
                "use --dimensions / --encoding to match, or another table"
            )
        other = [d for d in self._vector_indexes() if self._ops not in d]
        if other:
            raise ValueError(f"table {self.table!r} is indexed for another metric ({other[0]}); use its --metric, "
                             "or another table")
        wanted = [("text", self.store_text), ("metadata", self.with_metadata), ("line", True)]
        for name, on in wanted:
            if on and name not in cols:
                raise ValueError(f"table {self.table!r} has no {name!r} column")
        if self.sparse_vocab is not None and cols.get("sparse") != f"sparsevec({self.sparse_vocab})":
            raise ValueError(f"table {self.table!r} has no sparse column of type sparsevec({self.sparse_vocab})")

    def _create(self, dims: int, stamp: Stamp | None) -> None:
        from psycopg import sql

        binary = self.encoding == "ubinary"
        if not binary and dims > _HNSW_MAX_DIMS:
            raise ValueError(f"pgvector's HNSW index takes vectors of up to {_HNSW_MAX_DIMS} dimensions, not {dims}; "
                             "use --dimensions")
        cols = [sql.SQL("id text PRIMARY KEY"), sql.SQL("line bigint NOT NULL"),
                sql.SQL("vector {} NOT NULL").format(sql.SQL(self._vector_type(dims)))]
        if self.store_text:
            cols.append(sql.SQL("text text"))
        if self.with_metadata:
            cols.append(sql.SQL("metadata jsonb"))
        if self.sparse_vocab is not None:
            cols.append(sql.SQL("sparse {}").format(sql.SQL(f"sparsevec({int(self.sparse_vocab)})")))
        with _errors(f"cannot create table {self.table!r}"), self.conn.transaction():
            self.conn.execute(sql.SQL("CREATE TABLE {} ({})").format(self.ident, sql.SQL(", ").join(cols)))
            if stamp is not None:
                self.conn.execute(self._comment(stamp))

    @property
    def _ops(self) -> str:
        return "bit_hamming_ops" if self.encoding == "ubinary" else _OPS[self.metric][0]

    def _vector_indexes(self) -> list[str]:
        with _errors(f"cannot read the indexes of table {self.table!r}"):
            rows = self.conn.execute(
                "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = to_regclass(%s)", (self.qualified,)
            ).fetchall()
        return [str(r[0]) for r in rows if "(vector" in str(r[0])]

    def _build_index(self) -> str:
        """The HNSW index, unless the table has one on ``vector`` already; says what it did."""
        from psycopg import sql

        if any(self._ops in d for d in self._vector_indexes()):
            return ""
        index = sql.Identifier(f"{self.table.rsplit('.', 1)[-1]}_vector_hnsw")
        started = time.perf_counter()
        with _errors(f"cannot build the HNSW index of table {self.table!r}"):
            self.conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (vector {})").format(
                index, self.ident, sql.SQL(self._ops)))
        return f"; HNSW index ({self._ops}) built in {time.perf_counter() - started:.1f} s"

    def done(self, ids: Sequence[str]) -> set[str]:
        from psycopg import sql

        if not self.exists or not ids:
            return set()
        with _errors(f"Postgres query on {self.table!r} failed"):
            rows = self.conn.execute(sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(self.ident),
                                     (list(ids),)).fetchall()
        return {r[0] for r in rows}

    def _sparse_value(self, v: SparseVector) -> Any:
        from pgvector import SparseVector as PgSparse

        return PgSparse(v.as_dict(), self.sparse_vocab)

    def write(self, records: Sequence[Record], vectors: npt.NDArray[np.float32],
              sparse: Sequence[SparseVector] | None = None) -> None:
        from pgvector import Bit
        from psycopg import sql
        from psycopg.types.json import Jsonb

        if sparse is not None and self.sparse_vocab is None:
            raise ValueError("sparse vectors given but the pgvector sink was opened without sparse_vocab")
        if sparse is None and self.sparse_vocab is not None:
            raise ValueError("this pgvector sink stores a sparse vector per record, and the batch has none")
        problems = {i: p for i, r in enumerate(records)
                    if (p := _row_problem(r, store_text=self.store_text, with_metadata=self.with_metadata))}
        if sparse is not None:
            vocab = int(self.sparse_vocab or 0)
            for i, v in enumerate(sparse):
                if len(v.indices) and int(np.max(v.indices)) >= vocab:
                    problems.setdefault(i, f"sparse index {int(np.max(v.indices))} is outside the vocabulary ({vocab})")
        if problems:
            raise RowsRejected(problems)
        self._ensure(int(vectors.shape[1]))
        names = ["id", "line", "vector"] + [n for n, on in (("text", self.store_text), ("metadata", self.with_metadata),
                                                           ("sparse", sparse is not None)) if on]
        rows = []
        for i, r in enumerate(records):
            vec = Bit(np.asarray(vectors[i]) > 0) if self.encoding == "ubinary" else np.asarray(vectors[i], np.float32)
            row: list[Any] = [r.id, r.line, vec]
            if self.store_text:
                row.append(r.text)
            if self.with_metadata:
                row.append(Jsonb(r.metadata, dumps=lambda o: json.dumps(o, default=str)))
            if sparse is not None:
                row.append(self._sparse_value(sparse[i]))
            rows.append(row)
        query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}").format(
            self.ident,
            sql.SQL(", ").join(map(sql.Identifier, names)),
            sql.SQL(", ").join(sql.Placeholder() * len(names)),
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in names[1:]),
        )
        with _errors(f"Postgres upsert into {self.table!r} failed"), self.conn.transaction():
            self.conn.cursor().executemany(query, rows)

    def finish(self) -> str:
        from psycopg import sql

        if not self.exists:
            return f"nothing to store; table {self.table!r} was not created"
        built = self._build_index() if self.checked_dims is not None else ""  # a table this run has checked
        with _errors(f"cannot count table {self.table!r}"):
            row = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.ident)).fetchone()
        return f"Postgres table {self.table!r} holds {row[0] if row else 0} rows{built}"

    def close(self) -> None:
        self.conn.close()

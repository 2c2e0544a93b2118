"""``embed-gateway embed --qdrant`` and ``--pgvector`` end to end: the real app on the tiny checkpoint
over HTTP, a real PostgreSQL with pgvector, Qdrant in qdrant-client's local mode (a folder).

Like the Milvus tests in test_embed_cli.py, the interrupted run is a real process killed (SIGKILL)
at a point the test knows: the engine holds the run's next request until the test has acted. Every
stored vector is compared with what the gateway answers for its text.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.cli import main
from gateway.config import load_settings
from gateway.contract import EmbedJob, EmbedResult
from gateway.ingest.qdrant_sink import point_id, sign_vectors
from tests.e2e.test_embed_cli import start_cli, stop, texts, wait_for, write_jsonl
from tests.support.postgres import PostgresServer, postgres_server  # noqa: F401 - fixture
from tests.support.recording import RecordingEngine
from tests.support.server import LiveServer, live_server

DIMS = 32  # a Matryoshka cut of the tiny checkpoint's 64
N_FIRST, N_MORE = 10_000, 2_000
BATCH = 128
_db = itertools.count()


class GatedEngine(RecordingEngine):
    """The real HF engine behind a gate: once :meth:`arm` ed, it answers ``answered`` more jobs and
    holds every later one until :meth:`release`, so a run is stopped mid-way however slow the machine."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        super().__init__(inner)
        self.entered = 0
        self.limit: int | None = None
        self.holding = threading.Event()
        self._open = threading.Event()

    def arm(self, answered: int) -> None:
        self.entered, self.limit = 0, answered
        self.holding.clear()
        self._open.clear()

    def release(self) -> None:
        self._open.set()
        self.limit = None

    async def embed(self, job: EmbedJob) -> EmbedResult:
        self.entered += 1
        if self.limit is not None and self.entered > self.limit and not self._open.is_set():
            self.holding.set()
            await asyncio.to_thread(self._open.wait)
        return await self.inner.embed(job)


@pytest.fixture(scope="module")
def gated(original_dir: Path) -> GatedEngine:
    from engine_hf import HFEngine

    settings = load_settings(engines={"hf": {"model": str(original_dir), "device": "cpu", "max_input_tokens": 64}})
    return GatedEngine(HFEngine(settings.engines.hf))


@pytest.fixture(scope="module")
def gateway(original_dir: Path, gated: GatedEngine) -> Iterator[LiveServer]:
    # the cache off: every text reaches the engine (the gate counts requests)
    settings = load_settings(engines={"hf": {"model": str(original_dir), "device": "cpu", "max_input_tokens": 64}},
                             cache={"memory_bytes": 0})
    with live_server(settings, {"hf": gated}) as server:
        yield server


def served(url: str, docs: list[str], encoding: str = "float") -> list[list[float]] | list[bytes]:
    """What the gateway answers for each text (retrieval.passage, DIMS), in batches of 512."""
    out: list = []  # type: ignore[type-arg]
    with httpx.Client(timeout=120) as client:
        for start in range(0, len(docs), 512):
            body = {"input": docs[start:start + 512], "task": "retrieval.passage", "dimensions": DIMS,
                    "embedding_type": encoding}
            r = client.post(url + "/v1/embeddings", json=body)
            r.raise_for_status()
            data = r.json()["data"]
            if encoding == "ubinary":
                import base64

                out.extend(bytes(d["embedding"]) if isinstance(d["embedding"], list) else
                           base64.b64decode(d["embedding"]) for d in data)
            else:
                out.extend(d["embedding"] for d in data)
    return out


@pytest.fixture(scope="module")
def corpus(gateway: LiveServer) -> tuple[list[str], dict[str, np.ndarray]]:
    """12,000 short texts and the gateway's vector for each (computed once for both stores)."""
    docs = texts(N_FIRST + N_MORE)
    vectors = np.asarray(served(gateway.url, docs), dtype=np.float32)
    return docs, {f"r{i}": vectors[i] for i in range(len(docs))}


@pytest.fixture
def qdrant_dir(tmp_path: Path) -> Iterator[Path]:
    """qdrant-client's local mode commits every point on its own (an fsync each): on tmpfs when the
    machine has one, so 12,000 points take a second, not a minute."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else str(tmp_path)
    folder = Path(tempfile.mkdtemp(prefix="qdrant-", dir=base))
    try:
        yield folder
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


class Store:
    """One store under test: the CLI flags, and what it holds read with the store's own client."""

    def __init__(self, kind: str, where: str, name: str) -> None:
        self.kind, self.where, self.name = kind, where, name

    def flags(self) -> list[str]:
        if self.kind == "qdrant":
            return ["--qdrant", self.where, "--collection", self.name]
        return ["--pgvector", self.where, "--table", self.name]

    def rows(self, with_vectors: bool = True) -> list[tuple[str, np.ndarray | None, dict]]:  # type: ignore[type-arg]
        """(id, vector, extra) per stored row/point; the id as the record's."""
        if self.kind == "qdrant":
            from qdrant_client import QdrantClient

            client = QdrantClient(path=self.where)
            try:
                out, offset = [], None
                while True:
                    points, offset = client.scroll(self.name, limit=2048, offset=offset, with_vectors=with_vectors)
                    for p in points:
                        assert str(p.id) == point_id(p.payload["id"])
                        vec = np.asarray(p.vector["dense"], dtype=np.float32) if with_vectors else None
                        out.append((p.payload["id"], vec, p.payload))
                    if offset is None:
                        return out
            finally:
                client.close()
        import psycopg
        from pgvector.psycopg import register_vector

        with psycopg.connect(self.where) as conn:
            register_vector(conn)
            cols = "id, vector, line" if with_vectors else "id, NULL, line"
            rows = conn.execute(f'SELECT {cols} FROM "{self.name}"').fetchall()
        return [(r[0], None if r[1] is None else (r[1] if isinstance(r[1], str) else np.asarray(r[1].to_numpy())),
                 {"line": r[2]}) for r in rows]

    def stamp(self) -> dict:  # type: ignore[type-arg]
        if self.kind == "qdrant":
            from qdrant_client import QdrantClient

            client = QdrantClient(path=self.where)
            try:
                return client.get_collection(self.name).config.metadata["embed_gateway"]  # type: ignore[no-any-return]
            finally:
                client.close()
        import psycopg

        with psycopg.connect(self.where) as conn:
            comment = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (f'"{self.name}"',)).fetchone()
        return json.loads(comment[0])["embed_gateway"]  # type: ignore[no-any-return]


@pytest.fixture(params=["qdrant", "pgvector"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(store_kind: str, qdrant_dir: Path, postgres_server: PostgresServer):  # type: ignore[no-untyped-def]  # noqa: F811
    def make(name: str) -> Store:
        if store_kind == "qdrant":
            return Store("qdrant", str(qdrant_dir), name)
        return Store("pgvector", postgres_server.database(f"e2e{next(_db)}"), name)

    return make


def test_ten_thousand_rows_then_a_killed_run_resumes_exactly(gateway, gated, corpus, make_store, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    docs, want = corpus
    store = make_store("docs")
    first = write_jsonl(tmp_path / "first.jsonl", [{"id": f"r{i}", "text": docs[i]} for i in range(N_FIRST)])
    both = write_jsonl(tmp_path / "both.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(docs)])
    common = ["--id-field", "id", "--gateway", gateway.url, "--task", "retrieval.passage", "--dimensions", str(DIMS),
              "--batch-size", str(BATCH), "--concurrency", "2", "--no-progress", *store.flags(), "--create-collection"]

    assert main(["embed", str(first), *common]) == 0
    err = capsys.readouterr().err
    assert f"{N_FIRST} rows embedded" in err, err
    assert len(store.rows(with_vectors=False)) == N_FIRST

    # the second run (2,000 new rows) is killed after 5 more answered batches
    answered = 5
    gated.arm(answered)
    proc = start_cli(["embed", str(both), *common])
    try:
        wait_for(gated.holding, proc, "a held request")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        gated.release()
        stop(proc)
    assert proc.returncode == -signal.SIGKILL
    stored_then = {i for i, _, _ in store.rows(with_vectors=False)}
    # 10 batches answered; the writes of the last one or two may have been cut (Qdrant local mode
    # keeps whole points, Postgres whole batches), never one more than was answered
    assert N_FIRST + BATCH * (answered - 2) <= len(stored_then) <= N_FIRST + BATCH * answered, len(stored_then)

    capsys.readouterr()
    assert main(["embed", str(both), *common]) == 0
    err = capsys.readouterr().err
    assert f"{len(stored_then)} already stored (resumed)" in err, err
    assert f"{N_FIRST + N_MORE - len(stored_then)} rows embedded" in err, err

    rows = store.rows()
    ids = [i for i, _, _ in rows]
    assert len(ids) == N_FIRST + N_MORE and set(ids) == set(want)  # exactly the input's ids, none twice
    got = np.stack([v for _, v, _ in rows])
    expected = np.stack([want[i] for i in ids])
    cos = np.sum(got * expected, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
    assert cos.min() >= 0.99999, (cos.min(), ids[int(cos.argmin())])
    assert {r["line"] for _, _, r in rows} == set(range(1, N_FIRST + N_MORE + 1))
    space = httpx.post(gateway.url + "/v1/embeddings", timeout=60,
                       json={"input": "x", "task": "retrieval.passage", "dimensions": DIMS}).headers["x-embed-space"]
    assert store.stamp() == {"space": space, "model": None, "task": "retrieval.passage", "dimensions": DIMS,
                             "encoding": "float"}


def test_bad_rows_are_skipped_and_reported_and_another_stamp_is_refused(gateway, gated, make_store, store_kind, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    store = make_store("bad")
    long_text = " ".join(["coffee"] * 200)  # over the test gateway's 64-token limit
    rows = [{"id": "a", "text": "likes coffee"}, {"id": "b"}, {"id": "c", "text": long_text},
            {"id": "d", "text": "city park"}, {"id": "e\u0000", "text": "a NUL in the id"}, {"id": "f", "text": "dog cat"}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    with src.open("a") as f:
        f.write('{"id": "g", "text": "broken\n')
    report = tmp_path / "bad.jsonl"
    base = ["embed", str(src), "--id-field", "id", "--gateway", gateway.url, "--dimensions", str(DIMS),
            "--batch-size", "2", "--no-progress", *store.flags(), "--create-collection"]
    assert main([*base, "--skip-bad-rows", "--bad-rows", str(report)]) == 0
    err = capsys.readouterr().err
    bad = {b["line"]: b for b in map(json.loads, report.read_text().splitlines())}
    # Postgres text cannot hold a NUL: that row is refused by the store, reported like the others
    nul_refused = store_kind == "pgvector"
    assert set(bad) == ({2, 3, 5, 7} if nul_refused else {2, 3, 7})
    assert "text field 'text' is missing" in bad[2]["reason"] and "rejected by the embedder" in bad[3]["reason"]
    assert "invalid JSON" in bad[7]["reason"]
    if nul_refused:
        assert "refused by the store" in bad[5]["reason"] and "NUL" in bad[5]["reason"]
        assert "skipped in.jsonl line 5: refused by the store" in err, err
    want_ids = {"a", "d", "f"} | (set() if nul_refused else {"e\u0000"})
    assert {i for i, _, _ in store.rows(with_vectors=False)} == want_ids

    # another task into the same store: refused before anything is embedded or written, exit status 2
    gated.clear()
    more = write_jsonl(tmp_path / "more.jsonl", [{"id": "z", "text": "a new row"}])
    rc = main(["embed", str(more), "--id-field", "id", "--gateway", gateway.url, "--dimensions", str(DIMS),
               "--task", "text-matching", "--no-progress", *store.flags()])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "task=retrieval.passage" in err and "task=text-matching" in err and "differs in task" in err, err
    assert gated.jobs == []  # nothing was embedded
    assert {i for i, _, _ in store.rows(with_vectors=False)} == want_ids  # nothing was written
    # and another width, known only from the flags here
    rc = main(["embed", str(more), "--id-field", "id", "--gateway", gateway.url, "--dimensions", "16",
               "--no-progress", *store.flags()])
    assert rc == 2 and "dimensions=16" in capsys.readouterr().err
    assert gated.jobs == []


def test_ubinary_round_trip_and_hamming_search(gateway, make_store, store_kind, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    store = make_store("bits")
    docs = texts(60)
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(docs)])
    assert main(["embed", str(src), "--id-field", "id", "--gateway", gateway.url, "--dimensions", str(DIMS),
                 "--encoding", "ubinary", "--no-progress", *store.flags(), "--create-collection"]) == 0
    capsys.readouterr()
    wire = served(gateway.url, docs, "ubinary")  # the gateway's own ubinary bytes
    bits = {f"r{i}": np.unpackbits(np.frombuffer(b, dtype=np.uint8)) for i, b in enumerate(wire)}
    assert store.stamp()["encoding"] == "ubinary"

    stored = {i: v for i, v, _ in store.rows()}
    assert set(stored) == set(bits)
    for i, v in stored.items():
        got = (np.array([c == "1" for c in v]) if isinstance(v, str) else np.asarray(v) > 0).astype(np.uint8)
        assert got.tolist() == bits[i].tolist(), i

    # search by Hamming distance in the store itself, for the first text's bits
    query_bits = bits["r0"]
    want = {i: int((b != query_bits).sum()) for i, b in bits.items()}
    if store_kind == "qdrant":
        from qdrant_client import QdrantClient

        client = QdrantClient(path=store.where)
        try:
            query = sign_vectors(query_bits.astype(np.float32) - 0.5).tolist()
            hits = client.query_points("bits", query=query, using="dense", limit=len(docs)).points
        finally:
            client.close()
        got = [(h.payload["id"], round((DIMS - h.score) / 2)) for h in hits]  # ±1 dot = n - 2·hamming
    else:
        import psycopg
        from pgvector import Bit
        from pgvector.psycopg import register_vector

        with psycopg.connect(store.where) as conn:
            register_vector(conn)
            conn.execute("SET hnsw.ef_search = 200")  # the HNSW scan returns at most ef_search rows (default 40)
            got = [(i, int(d)) for i, d in conn.execute(
                "SELECT id, vector <~> %s AS d FROM bits ORDER BY d LIMIT %s", (Bit(query_bits.astype(bool)), len(docs))
            ).fetchall()]
    assert got[0][1] == 0 and ("r0", 0) in got  # r0 itself at distance 0 (another text may tie at 32 bits)
    assert all(d == want[i] for i, d in got) and [d for _, d in got] == sorted(want.values())

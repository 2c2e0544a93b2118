"""The parity guard against a REAL vLLM serving a deliberately wrong checkpoint: the same weights
without the sentence-transformers files (modules.json, 1_Pooling/), so vLLM silently falls back
to its architecture default, CLS pooling — the most common real-world mistake."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine_hf.synthetic import TINY, build_tokenizer, make_state, write_original
from gateway.config import load_settings
from tests.support.server import LiveServer, free_port, live_server
from tests.support.vllm import VLLMServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cls_vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    out = tmp_path_factory.mktemp("cls")
    tok = build_tokenizer(TINY.tokenizer_vocab, seed=1234)
    vocab = TINY.vocab_size or tok.get_vocab_size()
    # the session checkpoint's weights (seed 1234), but no pooling files
    path = write_original(out / "no-pooling", make_state(TINY, vocab, seed=1234), TINY, vocab, tok, sentence_transformers=False)
    assert not (path / "modules.json").exists() and not (path / "1_Pooling").exists()
    server = VLLMServer(path, free_port(), out / "vllm.log").start()
    try:
        yield server.wait_healthy()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gateway(original_dir: Path, cls_vllm: VLLMServer) -> Iterator[LiveServer]:
    settings = load_settings(
        engines={"hf": {"model": str(original_dir), "device": "cpu"}, "vllm": {"enabled": True, "url": cls_vllm.url}},
        auth={"admin_key": "k"},
    )
    with live_server(settings) as s:
        yield s


def test_cls_pooling_vllm_is_taken_out_and_shown(gateway: LiveServer) -> None:
    ready = httpx.get(gateway.url + "/ready")
    assert ready.status_code == 503 and ready.json()["not_ready"] == ["vllm"]
    vllm = ready.json()["engines"]["vllm"]
    assert vllm["parity"]["status"] == "failed" and "parity check failed" in vllm["detail"]
    assert vllm["parity"]["results"]["text-matching"]["mean_cosine"] < 0.999
    view = httpx.get(gateway.url + "/admin/engines", headers={"authorization": "Bearer k"}).json()
    assert view["serving_now"]["text-matching"] == ["hf"]
    assert gateway.app.state.metrics.value("embed_gateway_parity_failures_total", engine="vllm", task="text-matching") >= 1


def test_text_matching_is_served_by_hf_instead(gateway: LiveServer) -> None:
    r = httpx.post(gateway.url + "/v1/embeddings", json={"input": ["the user likes coffee"]}, timeout=60)
    assert r.status_code == 200 and r.headers["x-embed-engine"] == "hf"


def test_the_monitor_keeps_it_out_on_re_checks(gateway: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    gateway.call(gateway.app.state.monitor.tick())  # a re-check (vLLM is reachable: still wrong)
    ready = httpx.get(gateway.url + "/ready").json()["engines"]["vllm"]
    assert ready["parity"]["status"] == "failed" and ready["circuit"] == "closed"  # wrong, not down
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and "does NOT match" in r.getMessage()], (
        "an unchanged failure is logged once, not on every re-check"
    )

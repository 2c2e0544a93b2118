"""The parity guard against a REAL vLLM serving a deliberately wrong checkpoint: the same weights
without the sentence-transformers files (modules.json, 1_Pooling/), so vLLM silently falls back
to its architecture default, CLS pooling — the most common real-world mistake. And the fix the GPU
compose file applies (``--pooler-config`` with mean pooling), checked on the same files."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.config import load_settings
from tests.support.server import LiveServer, free_port, live_server
from tests.support.vllm import VLLMServer

pytestmark = pytest.mark.slow

COMPOSE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"


def compose_pooler_config() -> str:
    command = yaml.safe_load(COMPOSE.read_text())["services"]["vllm"]["command"]
    return next(a.partition("=")[2] for a in command if a.startswith("--pooler-config="))


@pytest.fixture(scope="module")
def servers(original_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, VLLMServer]]:
    out = tmp_path_factory.mktemp("no-pooling")
    # the session checkpoint, file for file, minus the sentence-transformers files
    path = Path(shutil.copytree(original_dir, out / "ckpt", ignore=shutil.ignore_patterns("modules.json", "*_Pooling", "*_Normalize")))
    assert not (path / "modules.json").exists() and not (path / "1_Pooling").exists()
    # both start at once (their start-ups overlap): as downloaded, and with the compose file's fix
    started = {
        "cls": VLLMServer(path, free_port(), out / "cls.log").start(),
        "fixed": VLLMServer(path, free_port(), out / "fixed.log", "--pooler-config", compose_pooler_config()).start(),
    }
    try:
        yield {name: server.wait_healthy() for name, server in started.items()}
    finally:
        for server in started.values():
            server.stop()


def gateway_for(original_dir: Path, vllm: VLLMServer):  # type: ignore[no-untyped-def]
    settings = load_settings(
        engines={"hf": {"model": str(original_dir), "device": "cpu"}, "vllm": {"enabled": True, "url": vllm.url}},
        auth={"admin_key": "k"},
    )
    return live_server(settings)


@pytest.fixture(scope="module")
def gateway(original_dir: Path, servers: dict[str, VLLMServer]) -> Iterator[LiveServer]:
    with gateway_for(original_dir, servers["cls"]) as s:
        yield s


def test_cls_pooling_vllm_is_taken_out_and_shown(gateway: LiveServer) -> None:
    ready = httpx.get(gateway.url + "/ready")  # degraded, not 503: hf serves every task
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ready.json()["not_ready"] == ["vllm"] and ready.json()["fast_path_lost"] == ["text-matching"]
    assert ready.json()["unserved"] == [] and ready.json()["tasks"]["text-matching"] == ["hf"]
    vllm = ready.json()["engines"]["vllm"]
    assert vllm["parity"]["status"] == "failed" and "parity check failed" in vllm["detail"]
    assert vllm["parity"]["results"]["text-matching"]["mean_cosine"] < 0.99  # CLS vs mean: not subtle
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


def test_the_compose_pooler_config_makes_the_same_files_pass(original_dir: Path, servers: dict[str, VLLMServer]) -> None:
    with gateway_for(original_dir, servers["fixed"]) as s:
        ready = httpx.get(s.url + "/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["engines"]["vllm"]["parity"]["results"]["text-matching"]["mean_cosine"] >= 0.9999
        r = httpx.post(s.url + "/v1/embeddings", json={"input": ["the user likes coffee"]}, timeout=60)
        assert r.headers["x-embed-engine"] == "vllm"

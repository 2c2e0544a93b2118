"""Operators toggle vLLM without a restart: edit the file, send SIGHUP, under load, with a REAL vLLM.
Not one request fails; text-matching moves to HF once the reload is applied, and back to vLLM
(after it passes the parity guard again) when it is switched on again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.load import Load
from tests.support.process import GatewayProcess
from tests.support.vllm import VLLMServer

pytestmark = pytest.mark.slow


def write(config: Path, original_dir: Path, vllm_url: str, *, vllm: bool) -> None:
    config.write_text(
        "engines:\n"
        f"  hf:\n    model: {original_dir}\n    device: cpu\n"
        f"  vllm:\n    enabled: {str(vllm).lower()}\n    url: {vllm_url}\n"
        "breaker:\n  probe_interval: 1\n"
        "auth:\n  admin_key: k\n"
    )


def test_sighup_moves_text_matching_between_engines_without_dropping_requests(
    original_dir: Path, vllm_server: VLLMServer, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    write(config, original_dir, vllm_server.url, vllm=True)
    gw = GatewayProcess(config, tmp_path / "gateway.log")
    try:
        gw.wait_for("vLLM in front", lambda: gw.admin()["serving_now"]["text-matching"] == ["vllm", "hf"], timeout=120)
        with Load(gw.url, clients=8, body={"input": ["the user likes coffee"], "model": "jina-embeddings-v3"}) as load:
            gw.wait_for("traffic on vLLM", lambda: load.served_by("vllm") >= 20)

            write(config, original_dir, vllm_server.url, vllm=False)
            sent = time.monotonic()
            gw.sighup()
            applied = gw.wait_for("reload applied", lambda: gw.admin()["routes"]["text-matching"] == ["hf"])
            gw.wait_for("traffic on HF", lambda: load.served_by("hf", since=applied) >= 20)
            assert load.served_by("vllm", since=applied + 1.0) == 0  # in-flight ones may finish on vLLM

            write(config, original_dir, vllm_server.url, vllm=True)
            gw.sighup()
            back = gw.wait_for("vLLM back", lambda: gw.admin()["serving_now"]["text-matching"] == ["vllm", "hf"])
            gw.wait_for("traffic on vLLM again", lambda: load.served_by("vllm", since=back) >= 20)
        outcomes = load.stop()
        assert len(outcomes) > 60
        assert load.failures() == [], load.failures()[:5]
        assert sent < applied
        log = gw.log()
        assert log.count("SIGHUP: reloading the configuration") == 2 and "reload applied" in log
        assert "engine vllm drained; closing it" in log
    finally:
        gw.stop()

"""`embed-gateway serve --config FILE` as a user runs it: a real process, a curl per task."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.server import free_port

REPO = Path(__file__).resolve().parents[2]


def test_serve_command_answers_every_task(original_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gateway.yaml"
    shipped = (REPO / "configs" / "gateway.yaml").read_text()
    config.write_text(shipped.replace("model: jinaai/jina-embeddings-v3", f"model: {original_dir}"))
    exe = shutil.which("embed-gateway", path=str(Path(sys.executable).parent)) or "embed-gateway"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EMBED_GATEWAY_ENGINES__HF__DEVICE": "cpu"}
    proc = subprocess.Popen(
        [exe, "serve", "--config", str(config), "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "gateway did not become ready"
            time.sleep(0.3)
        for task in ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching", "none"]:
            r = httpx.post(url + "/v1/embeddings", json={"input": ["hello world"], "task": task}, timeout=30)
            assert r.status_code == 200, r.text
            vec = r.json()["data"][0]["embedding"]
            assert len(vec) == 64 and abs(sum(v * v for v in vec) - 1.0) < 1e-4
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    # graceful shutdown; uvicorn re-raises SIGTERM after it, so the exit status is 0 or -SIGTERM
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Application shutdown complete" in out
    assert "hello world" not in out  # request texts are never logged by default

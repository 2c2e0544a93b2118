"""`embed-gateway serve --config FILE` as a user runs it: a real process, a curl per task."""

from __future__ import annotations

import json
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


def serve_without_model(env_extra: dict[str, str] | None = None, *, tty: bool = False) -> tuple[int, str]:
    """The README's serve command (shipped config) where the model is not there; (exit status, output).
    ``tty``: stdout/stderr are a pseudo-terminal, as for a person running it by hand."""
    exe = shutil.which("embed-gateway", path=str(Path(sys.executable).parent)) or "embed-gateway"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EMBED_GATEWAY_ENGINES__HF__MODEL": "/nonexistent",
           "EMBED_GATEWAY_ENGINES__HF__DEVICE": "cpu", **(env_extra or {})}
    cmd = [exe, "serve", "--config", str(REPO / "configs" / "gateway.yaml"), "--port", str(free_port())]
    if not tty:
        done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        return done.returncode, done.stdout
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(cmd, env=env, stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    chunks = []
    while True:  # read until the process closes the terminal (EIO on Linux)
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=120), b"".join(chunks).decode().replace("\r\n", "\n")


def test_failed_start_ends_with_one_clear_line_no_traceback() -> None:
    rc, out = serve_without_model()
    assert rc == 3, out
    assert "Traceback" not in out, out
    lines = [json.loads(line) for line in out.strip().splitlines()]  # not a terminal: JSON lines, as before
    assert lines[-1]["level"] == "critical" and lines[-1]["logger"] == "gateway.cli", lines[-1]
    assert lines[-1]["message"].startswith("embed-gateway could not start: no engine could start")
    assert "/nonexistent" in lines[-1]["message"]


def test_a_person_at_a_terminal_reads_plain_text() -> None:
    rc, out = serve_without_model(tty=True)
    assert rc == 3, out
    assert "Traceback" not in out and '{"ts"' not in out, out
    lines = out.strip().splitlines()
    assert any(" INFO uvicorn.error: Started server process" in line for line in lines), out
    assert " CRITICAL gateway.cli: embed-gateway could not start: no engine could start (engine hf: " in lines[-1]
    assert "'/nonexistent'" in lines[-1]

    rc, out = serve_without_model({"EMBED_GATEWAY_SERVER__LOG_FORMAT": "json"}, tty=True)  # configured: JSON
    assert rc == 3 and json.loads(out.strip().splitlines()[-1])["level"] == "critical", out


def test_bad_configuration_is_one_line() -> None:
    rc, out = serve_without_model({"EMBED_GATEWAY_SERVER__PORT": "abc"})
    assert rc == 2
    assert out.strip() == ("embed-gateway serve: error: invalid configuration: server.port: Input should be a valid "
                           "integer, unable to parse string as an integer (got 'abc')"), out

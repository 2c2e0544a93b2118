"""`embed-gateway serve` as a real process receiving SIGTERM with requests in flight: every one of
them is answered (200, the right vectors), new connections are refused, the process exits
cleanly, and its log is JSON lines with request ids and no request text."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from tests.support.process import GatewayProcess


def in_flight(gw: GatewayProcess) -> float:
    for line in httpx.get(gw.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("embed_gateway_requests_in_flight "):
            return float(line.split()[1])
    return 0.0


def test_sigterm_drains_in_flight_requests_and_exits(original_dir: Path, reference, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "gateway.yaml"
    # no cache: every request is real work (twelve requests of the same texts would be one computation)
    config.write_text(f"engines:\n  hf:\n    model: {original_dir}\n    device: cpu\n    max_queued_tokens: 1048576\n"
                      "server:\n  shutdown_grace: 60\ncache:\n  memory_bytes: 0\n")
    gw = GatewayProcess(config, tmp_path / "gateway.log")
    secret = "a private memory that must never reach a log"
    n = 12
    # ~1 s of work per request on 2 cores: the drain has seconds of work to wait for, not a race of milliseconds
    texts = [[f"{secret} {i}-{j} " + "coffee tea milk sugar " * 60 for j in range(64)] for i in range(n)]
    try:
        gw.wait_for("ready", lambda: httpx.get(gw.url + "/ready", timeout=2).status_code == 200, timeout=120)
        results: list[httpx.Response | Exception] = [None] * n  # type: ignore[list-item]

        def client(i: int) -> None:
            try:
                results[i] = httpx.post(gw.url + "/v1/embeddings", json={"input": texts[i], "task": "text-matching"},
                                        headers={"x-request-id": f"drain-{i}"}, timeout=120)
            except httpx.HTTPError as exc:
                results[i] = exc

        threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        gw.wait_for("requests in flight", lambda: in_flight(gw) >= n, timeout=60, poll=0.05)
        gw.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        refused = False
        try:
            httpx.get(gw.url + "/health", timeout=2)
        except httpx.TransportError:
            refused = True
        for t in threads:
            t.join(timeout=120)
        rc = gw.proc.wait(timeout=90)
    finally:
        gw.stop()
    assert refused, "the gateway still accepted connections after SIGTERM"
    for i, r in enumerate(results):
        assert isinstance(r, httpx.Response), f"request {i} got no answer: {r!r}"
        assert r.status_code == 200, r.text
        assert r.headers["x-request-id"] == f"drain-{i}"
        got = np.array([d["embedding"] for d in r.json()["data"][:2]])
        np.testing.assert_allclose(got, reference.encode(texts[i][:2], "text-matching"), atol=1e-5)
    assert rc in (0, -signal.SIGTERM), gw.log()[-3000:]

    lines = [json.loads(line) for line in gw.log().splitlines() if line.strip()]  # every line is JSON
    assert any(rec["message"].startswith("Application shutdown complete") for rec in lines)
    assert any(rec["message"].startswith("shutdown: waiting up to 60 s for") for rec in lines)
    # once started, the serving process froze what start-up built (full collections skip it)
    frozen = [rec["message"] for rec in lines if rec["message"].startswith("start-up heap frozen: ")]
    assert len(frozen) == 1 and int(frozen[0].split()[3]) > 10_000, frozen
    access = [rec for rec in lines if rec["logger"] == "gateway.access"]
    assert {rec["request_id"] for rec in access} >= {f"drain-{i}" for i in range(n)}
    assert all(rec["status"] == 200 and rec["tokens"] > 0 for rec in access if rec["request_id"].startswith("drain-"))
    assert secret not in gw.log()


def test_serve_refuses_to_start_with_an_empty_key_in_the_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("\n# only a comment\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(f"auth:\n  api_keys_file: {keys}\n")
    exe = shutil.which("embed-gateway", path=str(Path(sys.executable).parent)) or "embed-gateway"
    out = subprocess.run([exe, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "holds no key" in out.stderr

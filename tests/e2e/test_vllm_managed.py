"""Managed mode with a REAL vLLM: the gateway starts vLLM itself, vLLM is killed in the middle of a
bounded load (20 concurrent clients), and:

* not one request fails — while vLLM is down, text-matching is served by HF;
* the gateway restarts vLLM, and it is back in the route within the probe interval of answering
  (after passing the parity guard again);
* stopping the gateway stops vLLM and all of its processes.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support.load import Load
from tests.support.process import GatewayProcess
from tests.support.server import free_port
from tests.support.vllm import vllm_command, vllm_env

pytestmark = pytest.mark.slow

PROBE_INTERVAL = 2.0


def group_alive(pgid: int, grace: float = 15.0) -> bool:
    """Whether any process of the group is still there after ``grace`` seconds (killed
    processes take a moment to be reaped)."""
    deadline = time.monotonic() + grace
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)


def test_managed_vllm_is_started_restarted_after_a_kill_and_stopped(original_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in vllm_env().items() if k.startswith(("VLLM_", "HF_HUB_OFFLINE", "TOKENIZERS"))}
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "engines:\n"
        f"  hf:\n    model: {original_dir}\n    device: cpu\n"
        "  vllm:\n"
        "    enabled: true\n"
        f"    url: http://127.0.0.1:{port}\n"
        "    managed:\n"
        "      enabled: true\n"
        f"      command: {json.dumps(vllm_command(original_dir, port))}\n"
        f"      env: {json.dumps(env)}\n"
        f"      log_file: {tmp_path / 'vllm.log'}\n"
        "      restart_initial_delay: 0.5\n"
        f"breaker:\n  probe_interval: {PROBE_INTERVAL}\n"
        "auth:\n  admin_key: k\n"
        "cache:\n  memory_bytes: 0\n"  # the load repeats one input: every request must reach an engine
    )
    gw = GatewayProcess(config, tmp_path / "gateway.log")
    stopped = False
    try:
        # HF serves at once; vLLM joins once it is healthy and has passed the parity guard
        gw.wait_for("gateway up", lambda: httpx.get(gw.url + "/health", timeout=2).status_code == 200, timeout=120)
        r = httpx.post(gw.url + "/v1/embeddings", json={"input": "early"}, timeout=60)
        assert r.status_code == 200
        gw.wait_for("managed vLLM in front", lambda: gw.admin()["serving_now"]["text-matching"] == ["vllm", "hf"], timeout=420)
        # the gateway's monitor can see vLLM healthy a poll before the process supervisor's own health wait does
        gw.wait_for("supervisor saw it healthy",
                    lambda: gw.admin()["engines"]["vllm"]["info"]["process"]["state"] != "starting", timeout=30)
        process = gw.admin()["engines"]["vllm"]["info"]["process"]
        first_pid = process["pid"]
        assert process["state"] == "running" and process["restarts"] == 0 and first_pid

        with Load(gw.url, clients=20, body={"input": ["the user likes coffee"]}, pause=0.05) as load:
            gw.wait_for("traffic on vLLM", lambda: load.served_by("vllm") >= 40)
            killed_at = time.monotonic()
            os.kill(first_pid, signal.SIGKILL)  # vLLM's API server dies mid-load
            gw.wait_for("traffic on HF", lambda: load.served_by("hf", since=killed_at) >= 40, timeout=120)

            # the supervisor restarts it; track when it answers again and when it is back in the route
            healthy_at: list[float] = []

            def restarted_and_healthy() -> bool:
                p = gw.admin()["engines"]["vllm"]["info"]["process"]
                return p["restarts"] >= 1 and p["state"] == "running"

            def back_in_route() -> bool:
                if not healthy_at and restarted_and_healthy():
                    healthy_at.append(time.monotonic())
                return bool(healthy_at) and gw.admin()["serving_now"]["text-matching"] == ["vllm", "hf"]

            back_at = gw.wait_for("vLLM back in the route", back_in_route, timeout=420)
            assert back_at - healthy_at[0] <= PROBE_INTERVAL + 5.0, "not back within the probe interval"
            gw.wait_for("traffic on vLLM again", lambda: load.served_by("vllm", since=back_at) >= 40, timeout=120)
        outcomes = load.stop()

        assert load.failures() == [], load.failures()[:5]
        # the outage was real (a restart takes tens of seconds) and HF carried the load meanwhile
        first_back = min(o.at for o in outcomes if o.engine == "vllm" and o.at > killed_at + 1)
        assert first_back - killed_at > 10
        assert sum(1 for o in outcomes if killed_at + 1 < o.at < first_back and o.engine == "hf") >= 40
        process = gw.admin()["engines"]["vllm"]["info"]["process"]
        second_pid = process["pid"]
        assert second_pid != first_pid and process["restarts"] == 1 and process["last_exit_code"] == -signal.SIGKILL
        assert not group_alive(first_pid)  # the crashed server's children were cleaned up too
        # the metrics tell the same story: requests fell back while vLLM was down, its circuit
        # opened, and it is back: healthy, closed, parity passed
        metrics = httpx.get(gw.url + "/metrics", timeout=10).text
        fallbacks = [ln for ln in metrics.splitlines() if ln.startswith("embed_gateway_fallbacks_total{")
                     and 'engine="vllm"' in ln]
        assert fallbacks and sum(float(ln.split()[-1]) for ln in fallbacks) >= 1, fallbacks
        assert 'embed_gateway_circuit_opened_total{engine="vllm"}' in metrics
        for line in ('embed_gateway_circuit_open{engine="vllm"} 0.0', 'embed_gateway_engine_ready{engine="vllm"} 1.0',
                     'embed_gateway_parity_status{engine="vllm",status="passed"} 1.0'):
            assert line in metrics, line
        served = {e: sum(float(ln.split()[-1]) for ln in metrics.splitlines()
                         if ln.startswith("embed_gateway_requests_total{") and f'engine="{e}"' in ln
                         and 'status="200"' in ln) for e in ("vllm", "hf")}
        assert served["vllm"] >= 80 and served["hf"] >= 40, served

        rc = gw.stop()
        stopped = True
        assert rc in (0, -signal.SIGTERM), gw.log()[-3000:]
        assert not group_alive(second_pid), "vLLM (or one of its children) outlived the gateway"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        log = gw.log()
        assert "exited with -9; restarting" in log and "Application shutdown complete" in log
    finally:
        if not stopped:
            gw.stop()

"""The hop race against a REAL vLLM: ``python -m gateway.bench.pair --a vllm --b gateway-vllm``
starts vLLM on the tiny checkpoint and the gateway in front of it, and reports the throughput
ratio and the idle latency the gateway adds (~1.5 min: vLLM's start-up)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.vllm import vllm_python

pytestmark = pytest.mark.slow


def test_the_hop_is_raced_side_by_side_with_idle_latency(original_dir: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "gateway.bench.pair", "--model", str(original_dir), "--a", "vllm", "--b", "gateway-vllm",
           "--vllm-python", vllm_python(), "--requests", "8", "--concurrency", "4", "--rounds", "2", "--idle", "6", "--settle", "0.2",
           "--out", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = json.loads(run.stdout)
    # every request answered (the race stops at the first failure), the gateway's HF engine off: vLLM served them
    assert (out["a"], out["b"], len(out["rounds"])) == ("vllm", "gateway-vllm", 2)
    for row in out["rounds"]:
        assert row["a"] > 0 and row["b"] > 0
        idle = row["idle"]
        for side in ("a", "b"):
            assert 0 < idle[side]["p50_ms"] <= idle[side]["p90_ms"]
        assert idle["added_p50_ms"] == pytest.approx(idle["b"]["p50_ms"] - idle["a"]["p50_ms"], abs=2e-3)
    summary = out["idle"]
    assert summary["requests_per_round"] == 6
    assert min(summary["added_p50_ms_range"]) <= summary["added_p50_ms_median"] <= max(summary["added_p50_ms_range"])

"""The shadow A/B bench (``python -m gateway.bench.shadow_bench``): one real tiny run, primary and
candidate gateways on CPUs of their own, three arms alternated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def st_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from engine_hf.tools.st_checkpoint import main as write

    a, b = tmp_path_factory.mktemp("st-a"), tmp_path_factory.mktemp("st-b")
    write([str(a), "--size", "tiny", "--prompts", "none"])
    write([str(b), "--size", "tiny", "--prompts", "none", "--seed", "7"])
    return a, b


def test_the_shadow_bench_measures_each_arm_and_reads_the_shadow(st_pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = st_pair
    cmd = [sys.executable, "-m", "gateway.bench.shadow_bench", "--primary", f"p=sentence-transformers:{a}",
           "--candidate", f"c=sentence-transformers:{b}", "--requests", "24", "--concurrency", "4", "--rounds", "1",
           "--out", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout)
    (row,) = out["rounds"]
    assert set(row) >= {"plain", "shadowed", "plain_candidate_busy"}
    assert out["failed_requests"] == 0
    assert row["p50_shadowed_over_plain"] == pytest.approx(row["shadowed"]["p50_ms"] / row["plain"]["p50_ms"], abs=2e-3)
    shadow = out["shadow"]
    # the warm-up wave and the shadowed arm were sampled; the plain arms never were
    assert shadow["sampled"] == 4 + 24 and shadow["shadowed"] + shadow["dropped"] == shadow["sampled"]
    assert shadow["lanes"][0]["task"] == "none" and "[" in out["cpu"]

"""``embed-gateway verify``: the checked side batches every task and length in one pass and is
compared with each text embedded alone in fp32; it passes and fails on the numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine_hf.attention import cumulative_bounds, uses_varlen_kernel
from engine_hf.tools.verify import verify


def test_fp32_cpu_agrees_with_itself_in_both_attention_modes(original_dir: Path) -> None:
    out = verify(str(original_dir), device="cpu", dtype="float32", threshold=0.99999)
    assert out["passed"] and set(out["modes"]) == {"padded", "packed"}
    assert out["tokens"]["max"] > 4 * out["tokens"]["min"]  # the batch really mixes lengths
    for mode in out["modes"].values():
        assert set(mode["per_task"]) == {"retrieval.query", "retrieval.passage", "separation", "classification",
                                         "text-matching", "none"}
        assert mode["min_cosine"] >= 0.99999


def test_bf16_is_close_but_a_threshold_above_its_precision_fails(original_dir: Path) -> None:
    out = verify(str(original_dir), device="cpu", dtype="bfloat16", attention=["packed"], threshold=0.9)
    assert out["passed"] and 0.9 <= out["modes"]["packed"]["min_cosine"] < 0.999999
    strict = verify(str(original_dir), device="cpu", dtype="bfloat16", attention=["packed"], threshold=0.9999999)
    assert strict["passed"] is False and strict["modes"]["packed"]["passed"] is False


def test_cli_exit_code_follows_the_verdict(original_dir: Path) -> None:
    base = [sys.executable, "-m", "gateway.cli", "verify", "--model", str(original_dir), "--device", "cpu",
            "--attention", "packed"]
    good = subprocess.run([*base, "--dtype", "float32"], capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["passed"] is True
    bad = subprocess.run([*base, "--dtype", "bfloat16", "--threshold", "0.9999999"], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 1 and json.loads(bad.stdout)["passed"] is False


def test_varlen_bounds_and_kernel_choice() -> None:
    cu, longest = cumulative_bounds([(0, 3), (3, 10), (10, 12)], torch.device("cpu"))
    assert cu.tolist() == [0, 3, 10, 12] and cu.dtype == torch.int32 and longest == 7
    with pytest.raises(ValueError, match="contiguous"):
        cumulative_bounds([(0, 3), (4, 10)], torch.device("cpu"))
    # the fused varlen kernel is CUDA + half precision only; a CPU batch takes per-sequence SDPA
    assert not uses_varlen_kernel(torch.zeros(1, 2, 3, 4))
    assert not uses_varlen_kernel(torch.zeros(1, 2, 3, 4, dtype=torch.bfloat16))

"""What the bench report says about the machine and the model, and the chart it draws."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.bench.hardware import cpu_info, flops_per_token, gemm_bound
from gateway.bench.report import CHART, markdown, write

STORED = Path(__file__).resolve().parents[2] / "docs" / "bench-results" / "cpu-2core-2026-11-25.json"
FULL = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24}


def test_the_chart_is_drawn_from_a_stored_result(tmp_path: Path) -> None:
    results = json.loads(STORED.read_text())
    md, js = write(results, tmp_path)
    png = tmp_path / CHART
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert f"]({CHART})" in md.read_text()
    assert json.loads(js.read_text()) == results  # the stored keys are kept as they were


def test_rows_are_reported_against_the_ceiling(tmp_path: Path) -> None:
    results = {"machine": "m", "settings": {}, "workloads": {"facts": {"description": "d", "targets": [
        {"target": "gateway-hf", "tokens_per_second": 90.0},
        {"target": "ceiling", "tokens_per_second": 120.0, "path": "ort", "paths": {"engine": 60.0, "ort": 120.0}},
    ], "gemm_bound_tokens_per_second": 400.0}},
        "hardware": {"cpu": {"model": "Test CPU", "cpus": 2, "simd": ["avx2", "amx_bf16"]}, "threads": 2,
                     "versions": {"torch": "1"}, "gemm_peak": {"shape": [8, 8, 8], "repeats": 1,
                                                               "paths": {"fp32-mkl": {"gflops": 50.0}},
                                                               "used": {"path": "fp32-mkl", "gflops": 50.0}}}}
    text = markdown(results)
    assert "| gateway-hf | 90.0 |" in text and "| 0.75 |" in text  # 90 / 120, not 90 / the engine's 60
    assert "| ceiling | 120.0 |" in text and "| ort |" in text
    assert "Test CPU" in text and "avx2 amx_bf16" in text and "fp32-mkl 50.0" in text
    assert "GEMM bound: 400.0 tokens/s (the ceiling reaches 30% of it)" in text
    write(results, tmp_path)
    assert (tmp_path / CHART).exists()


def test_model_flops_and_the_gemm_bound() -> None:
    # the linear layers of jina-v3 (Q, K, V, O, MLP): 2 x 24 x (4 x 1024^2 + 2 x 1024 x 4096) = 604 MFLOP/token
    assert flops_per_token(FULL, 0) == pytest.approx(2 * 24 * (4 * 1024**2 + 2 * 1024 * 4096))
    assert flops_per_token(FULL, 512) > flops_per_token(FULL, 16)  # attention grows with the length
    short, long = gemm_bound(FULL, [16] * 4, 100.0), gemm_bound(FULL, [2048], 100.0)
    assert short > long > 0 and short == pytest.approx(100e9 / flops_per_token(FULL, 16))


def test_the_cpu_is_named_with_its_flags(tmp_path: Path) -> None:
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu avx2 avx512f amx_bf16 sse\n\n"
                    "processor\t: 1\nmodel name\t: Some Xeon\nflags\t\t: fpu avx2\n")
    info = cpu_info(fake)
    assert info["model"] == "Some Xeon" and info["simd"] == ["avx2", "avx512f", "amx_bf16"]
    assert "sse" in info["flags"] and cpu_info()["model"]  # this machine's, whatever it is

"""The bench's in-process reference points: the ceiling is a mean, on the engine's forward pass."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from engine_hf.tools import baselines


class _ScriptedClock:
    """perf_counter() that makes the n-th timed pass take ``durations[n]`` seconds."""

    def __init__(self, durations: list[float]) -> None:
        self._durations = iter(durations)
        self._now = 0.0
        self._starts = itertools.count()

    def __call__(self) -> float:
        if next(self._starts) % 2 == 1:  # the end of a pass
            self._now += next(self._durations)
        return self._now


def test_ceiling_is_the_mean_of_the_repeats_not_the_best(original_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    enc, _ = baselines.load_encoder(str(original_dir), "cpu", "auto")
    calls: list[bool] = []
    real = enc.pooled_batch

    def spy(seqs, rows, *, packed):  # type: ignore[no-untyped-def]
        calls.append(packed)
        return real(seqs, rows, packed=packed)

    monkeypatch.setattr(enc, "pooled_batch", spy)
    monkeypatch.setattr(baselines.time, "perf_counter", _ScriptedClock([1.0, 2.0, 6.0]))
    # 4 x 64 = 256 tokens < 2048: three timed repeats on a CPU
    forward = baselines._engine_path(baselines.PathContext(enc, True, None, None))
    mean, best = baselines._uniform_timing(forward, enc.config.vocab_size, len(enc.task_index) - 1, 64, 256,
                                           on_gpu=False)
    assert mean == pytest.approx(3.0 / 256) and best == pytest.approx(1.0 / 256)
    assert calls == [True, True, True]  # the forward pass the engine serves with


def test_ceiling_reports_mean_and_best_and_its_attention(original_dir: Path) -> None:
    enc, text = baselines.load_encoder(str(original_dir), "cpu", "auto")
    requests = [{"texts": ["a short text", "a somewhat longer text " * 6], "task": "retrieval.passage"}]
    r = baselines.ceiling(enc, text, requests, 512, packed=True)
    assert r["attention"] == "packed" and r["tokens"] > 0
    assert r["best_tokens_per_second"] >= r["tokens_per_second"] > 0
    assert r["tokens_per_second"] == pytest.approx(r["tokens"] / r["seconds"])


def test_the_ceiling_times_every_forward_path_and_is_the_fastest(original_dir: Path, onnx_dir: Path) -> None:
    enc, text = baselines.load_encoder(str(original_dir), "cpu", "float32")
    ctx = baselines.PathContext(enc, True, onnx_dir, 1)
    paths = {name: baselines.FORWARD_PATHS[name](ctx) for name in ("engine", "ort")}
    requests = [{"texts": ["a short text", "a somewhat longer text " * 6], "task": "text-matching"}]
    r = baselines.ceiling(enc, text, requests, 256, packed=True, paths=paths)
    assert set(r["paths"]) == {"engine", "ort"}
    assert all(p["tokens_per_second"] > 0 for p in r["paths"].values())
    assert r["path"] == max(r["paths"], key=lambda k: r["paths"][k]["tokens_per_second"])
    assert r["tokens_per_second"] == pytest.approx(r["paths"][r["path"]]["tokens_per_second"], abs=0.1)


def test_the_ceiling_row_takes_the_path_fastest_over_both_timings() -> None:
    from gateway.bench.results import CeilingRow

    def run(engine_s: float, ort_s: float) -> dict[str, object]:
        best = min(engine_s, ort_s)
        return {"tokens": 100, "seconds": best, "tokens_per_second": 100 / best, "best_tokens_per_second": 100 / best,
                "peak_rss_mib": 10.0, "paths": {"engine": {"seconds": engine_s, "best_tokens_per_second": 100 / engine_s,
                                                           "tokens_per_second": 100 / engine_s},
                                                "ort": {"seconds": ort_s, "best_tokens_per_second": 100 / ort_s,
                                                        "tokens_per_second": 100 / ort_s}}}

    # ort wins the first timing by a little, the engine the second by a lot: the engine is faster on the mean
    row = CeilingRow.of([run(1.1, 1.0), run(0.5, 1.0)]).as_dict()
    assert row["path"] == "engine" and row["paths"] == {"engine": 125.0, "ort": 100.0}
    assert row["tokens_per_second"] == 125.0 and row["runs_tokens_per_second"] == [90.9, 200.0]


def test_the_gemm_peak_reports_each_path_this_machine_has() -> None:
    from engine_hf.tools.gemm_peak import gemm_peak
    from gateway.bench.hardware import cpu_info

    r = gemm_peak(64, 32, 48, repeats=2, threads=1)
    assert r["shape"] == [64, 32, 48] and r["threads"] == 1
    for name in ("fp32-mkl", "fp32-onednn", "fp32-ort"):
        assert r["paths"][name]["best_gflops"] >= r["paths"][name]["gflops"] > 0, r["paths"][name]
    native_bf16 = bool({"avx512_bf16", "amx_bf16"} & set(cpu_info()["flags"]))
    assert ("bf16-onednn" in r["paths"]) is native_bf16

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
    mean, best = baselines._uniform_seconds_per_token(enc, 64, 256, packed=True)
    assert mean == pytest.approx(3.0 / 256) and best == pytest.approx(1.0 / 256)
    assert calls == [True, True, True]  # the forward pass the engine serves with


def test_ceiling_reports_mean_and_best_and_its_attention(original_dir: Path) -> None:
    enc, text = baselines.load_encoder(str(original_dir), "cpu", "auto")
    requests = [{"texts": ["a short text", "a somewhat longer text " * 6], "task": "retrieval.passage"}]
    r = baselines.ceiling(enc, text, requests, 512, packed=True)
    assert r["attention"] == "packed" and r["tokens"] > 0
    assert r["best_tokens_per_second"] >= r["tokens_per_second"] > 0
    assert r["tokens_per_second"] == pytest.approx(r["tokens"] / r["seconds"])

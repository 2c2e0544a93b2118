"""The alternating pair race (``python -m gateway.bench.pair``): its target specs, the pause that
keeps the idle server off the cores, and one real tiny race."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.bench.pair import on_task, parse_target, round_order
from gateway.bench.workloads import make_workload
from gateway.bench.servers import gateway_server


def test_targets_are_parsed_into_the_gateways_environment() -> None:
    t = parse_target("gateway-hf:ENGINES__HF__BATCH_GATHER_MS=0,embed_gateway_engines__hf__threads=2")
    assert t.kind == "gateway-hf"
    assert t.env == {"EMBED_GATEWAY_ENGINES__HF__BATCH_GATHER_MS": "0", "EMBED_GATEWAY_ENGINES__HF__THREADS": "2"}
    assert parse_target("vllm").kind == "vllm" and parse_target("gateway-hf").env == {}
    hop = parse_target("gateway-vllm:ENGINES__VLLM__MAX_CONNECTIONS=8")
    assert hop.kind == "gateway-vllm" and hop.env == {"EMBED_GATEWAY_ENGINES__VLLM__MAX_CONNECTIONS": "8"}
    for bad in ("ort", "gateway-hf:THREADS", "vllm:X=1", "gateway-hf:=1"):
        with pytest.raises(ValueError):
            parse_target(bad)


def test_a_paused_server_answers_nothing_until_it_is_resumed(original_dir: Path, tmp_path: Path) -> None:
    srv, url = gateway_server("gateway-hf", {"EMBED_GATEWAY_ENGINES__HF__MODEL": str(original_dir),
                                             "EMBED_GATEWAY_ENGINES__HF__DEVICE": "cpu"}, tmp_path)
    srv.start(timeout=180)
    try:
        body = {"input": ["a fact"], "task": "text-matching"}
        srv.pause()
        with pytest.raises(httpx.TimeoutException):
            httpx.post(url + "/v1/embeddings", json=body, timeout=2)
        srv.resume()
        assert httpx.post(url + "/v1/embeddings", json=body, timeout=60).status_code == 200
    finally:
        srv.stop()
    assert srv.proc is not None and srv.proc.returncode is not None  # stopped even after a pause


def test_two_gateways_race_in_alternating_rounds(original_dir: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "gateway.bench.pair", "--model", str(original_dir),
           "--a", "gateway-hf:ENGINES__HF__BATCH_GATHER_MS=0", "--b", "gateway-hf",
           "--task", "retrieval.query", "--requests", "8", "--concurrency", "4", "--rounds", "2", "--settle", "0.2",
           "--out", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout)
    assert len(out["rounds"]) == 2 and out["workload"] == "facts" and out["task"] == "retrieval.query"
    for row in out["rounds"]:
        assert row["a"] > 0 and row["b"] > 0 and row["b_over_a"] == pytest.approx(row["b"] / row["a"], abs=2e-3)
    assert min(out["b_over_a_range"]) <= out["b_over_a_median"] <= max(out["b_over_a_range"])
    assert "[" in out["cpu"]  # the CPU's flags are printed with the figures


def test_bad_targets_are_refused_before_anything_starts(original_dir: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "gateway.bench.pair", "--model", str(original_dir),
                          "--a", "ort", "--b", "gateway-hf"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "unknown target 'ort'" in run.stderr


def test_the_order_flips_every_round_and_a_negative_settle_is_refused(original_dir: Path) -> None:
    assert [round_order(r) for r in range(4)] == [(0, 1), (1, 0), (0, 1), (1, 0)]
    run = subprocess.run([sys.executable, "-m", "gateway.bench.pair", "--model", str(original_dir),
                          "--a", "gateway-hf", "--b", "gateway-hf", "--settle", "-1"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "--settle at least 0" in run.stderr


def test_the_hop_needs_the_vllm_it_fronts(original_dir: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "gateway.bench.pair", "--model", str(original_dir),
                          "--a", "gateway-hf", "--b", "gateway-vllm"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "race it against vllm" in run.stderr


def test_task_puts_every_request_on_one_task_and_keeps_the_texts() -> None:
    reqs = make_workload("mixed", 10, lambda t: len(t.split()) + 2, seed=0)
    assert len({r.task for r in reqs}) > 1
    moved = on_task(reqs, "text-matching")
    assert {r.task for r in moved} == {"text-matching"}
    assert [(r.texts, r.tokens) for r in moved] == [(r.texts, r.tokens) for r in reqs]


def test_vllm_is_not_raced_on_another_task_without_task(original_dir: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "gateway.bench.pair", "--model", str(original_dir),
                          "--a", "vllm", "--b", "gateway-hf", "--workload", "passages"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "--task text-matching" in run.stderr
    run = subprocess.run([sys.executable, "-m", "gateway.bench.pair", "--model", str(original_dir),
                          "--a", "vllm", "--b", "gateway-hf", "--task", "retrieval.query"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "--task text-matching" in run.stderr

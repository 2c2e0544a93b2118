"""The benchmark tool: reproducible workloads, statistics, target checks, and one real tiny run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.bench.checks import Check, evaluate, load_checks
from gateway.bench.loadgen import BenchClient, closed_loop, open_loop
from gateway.bench.runner import gateway_body, token_counter
from gateway.bench.stats import Sample, percentile, summarize
from gateway.bench.workloads import WORKLOADS, BenchRequest, make_workload
from gateway.config import load_settings
from tests.support.fakes import FakeEngine, HeldEngine
from tests.support.server import live_server

#: the project's targets, as `embed-gateway bench` checks them by default
SHIPPED_CHECKS = Path(__file__).resolve().parents[2] / "configs" / "bench-checks.yaml"


def checks(results: dict[str, object]) -> list[dict[str, object]]:
    return [c.as_dict() for c in evaluate(results, load_checks(SHIPPED_CHECKS))]


@pytest.fixture(scope="module")
def count(original_dir: Path):  # type: ignore[no-untyped-def]
    return token_counter(str(original_dir))


@pytest.mark.parametrize("name", ["facts", "passages", "mixed"])
def test_workloads_are_seeded_and_hit_their_token_ranges(name: str, count) -> None:  # type: ignore[no-untyped-def]
    a = make_workload(name, 12, count, seed=3)
    assert a == make_workload(name, 12, count, seed=3)
    assert a != make_workload(name, 12, count, seed=4)
    w = WORKLOADS[name]
    lo, hi = w.lengths
    for req in a:
        assert w.texts_per_request[0] <= len(req.texts) <= w.texts_per_request[1]
        for text, n in zip(req.texts, req.tokens, strict=True):
            assert n == count(text)
            assert lo - 2 <= n <= hi  # a word can overshoot by a token or two, then is dropped
    assert {r.task for r in a} == set(w.tasks)


def test_percentiles_and_summary() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 99) == 5
    s = summarize([Sample(0.1, 100, 1, True), Sample(0.3, 300, 1, True), Sample(0.2, 0, 1, False, 429)], 2.0)
    assert s.errors == 1 and s.tokens_per_second == 200.0 and s.requests_per_second == 1.0
    assert s.p50_ms == 200.0


def test_checks_compare_the_right_rows() -> None:
    rows = lambda **t: {"targets": [{"target": k.replace("_", "-"), "tokens_per_second": v, "p50_ms": 10.0} for k, v in t.items()]}  # noqa: E731
    results = {
        "workloads": {
            "passages": rows(gateway_hf=95.0, ceiling=100.0, naive=60.0),
            "facts": rows(gateway_hf=110.0, vllm=100.0),
        }
    }
    got = {c["name"]: c for c in checks(results)}
    assert got["passages: gateway-hf / ceiling"]["met"] is True
    assert got["passages: gateway-hf / naive"]["met"] is True  # 95/60 = 1.58
    assert got["facts: gateway-hf / vllm"]["measured"] == 1.1
    # saturated p50s (queueing) are not the overhead check; the idle paired measurement is
    assert not any("added by gateway" in name for name in got)
    results["idle_overhead_vllm"] = {"added_p50_ms": 4.2}
    got = {c["name"]: c for c in checks(results)}
    assert got["idle p50 added by gateway in front of vllm (ms)"] == {
        "name": "idle p50 added by gateway in front of vllm (ms)", "measured": 4.2, "target": "<= 1 ms", "met": False}


def test_the_shipped_targets_reproduce_the_published_runs_checks() -> None:
    """The targets moved from code to configs/bench-checks.yaml: evaluated on a published run's
    numbers they give exactly the checks the code wrote into it."""
    published = sorted((SHIPPED_CHECKS.parents[1] / "docs" / "bench-results").glob("*.json"))
    assert published
    for path in published:
        run = json.loads(path.read_text())
        if "workloads" not in run:  # another tool's raw figures (e.g. the Ray measurements), not a bench run
            continue
        assert checks(run) == run["checks"], path.name


def test_checks_are_data_any_file_of_targets_is_reported_against(tmp_path: Path) -> None:
    results = {"workloads": {"facts": {"targets": [{"target": "gateway-hf", "tokens_per_second": 90.0},
                                                   {"target": "vllm", "tokens_per_second": 100.0}]}},
               "idle_gateway_hf": {"p50_ms": 30.0}, "idle_forward": {"seconds": 0.025}}
    f = tmp_path / "targets.yaml"
    f.write_text(
        "checks:\n"
        "  - {name: ratio, measured: workloads.facts.gateway-hf.tokens_per_second,"
        " per: workloads.facts.vllm.tokens_per_second, target: '>= 0.85'}\n"
        "  - {name: idle, measured: idle_gateway_hf.p50_ms, per: idle_forward.seconds, per_scale: 1000,"
        " target: '<= 1.1'}\n"
        "  - {name: absent, measured: workloads.facts.naive.tokens_per_second, target: '>= 1'}\n"
    )
    got = [c.as_dict() for c in evaluate(results, load_checks(f))]
    assert got == [{"name": "ratio", "measured": 0.9, "target": ">= 0.85", "met": True},
                   {"name": "idle", "measured": 1.2, "target": "<= 1.1", "met": False}]
    assert [c.met for c in evaluate(results, [Check(name="x", measured="idle_gateway_hf.p50_ms", target="<= 30 ms")])] == [True]
    f.write_text("checks:\n  - {name: bad, measured: a.b, target: 'about 3'}\n")
    with pytest.raises(ValueError, match="about 3"):
        load_checks(f)


def test_the_metrics_reader_parses_prometheus_text_by_sample_and_labels() -> None:
    from gateway.bench.scrape import sample_values

    text = (
        "# HELP process_cpu_seconds Total user and system CPU time spent in seconds.\n"
        "# TYPE process_cpu_seconds counter\n"
        "process_cpu_seconds_total 4.25\n"
        "# TYPE vllm:request_success counter\n"
        'vllm:request_success_total{finished_reason="stop",model_name="m"} 7.0\n'
    )
    assert sample_values(text, "process_cpu_seconds_total") == [4.25]
    assert sample_values(text, "vllm:request_success_total", model_name="m") == [7.0]
    assert sample_values(text, "vllm:request_success_total", model_name="other") == []


def test_bench_options_not_given_keep_the_settings_defaults_and_the_shipped_checks() -> None:
    from gateway.bench.runner import BenchSettings
    from gateway.cli import bench_settings, build_parser

    got = bench_settings(build_parser().parse_args(["bench", "--model", "m"]))
    assert got == BenchSettings(model="m", out_dir=Path("bench-results"), checks=load_checks(SHIPPED_CHECKS))
    assert {c.name for c in got.checks} >= {"passages: gateway-hf / ceiling", "facts: gateway-hf / vllm"}
    got = bench_settings(build_parser().parse_args([
        "bench", "--model", "m", "--targets", "gateway-hf,naive", "--requests", "facts=3", "--seed", "2",
        "--checks", "", "--rate", "4"]))
    assert list(got.targets) == ["gateway-hf", "naive"] and got.seed == 2 and got.rate == 4 and got.checks == ()
    assert got.requests == {**BenchSettings(model="m", out_dir=Path()).requests, "facts": 3}


@pytest.mark.parametrize(("argv", "says"), [
    (["--workloads", "facts,mixed-single-task"], "unknown workload(s) mixed-single-task; known: facts, passages, mixed, long "
                                                 "(mixed-single-task comes with mixed)"),
    (["--targets", "gateway-hf,fastembed"], "unknown target(s) fastembed"),
    (["--requests", "fact=3"], "--requests names unknown workload(s) fact"),
    (["--requests", "facts"], "--requests takes WORKLOAD=N"),
    (["--checks", "/nonexistent/checks.yaml"], "cannot read --checks /nonexistent/checks.yaml"),
])
def test_bench_refuses_unknown_names_in_one_line_before_starting_anything(argv, says, capsys) -> None:  # type: ignore[no-untyped-def]
    from gateway.cli import main

    assert main(["bench", "--model", "/nonexistent", "--out", "/nonexistent-out", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("embed-gateway bench: ") and says in err and len(err.strip().splitlines()) == 1


def test_gpu_peak_is_read_from_the_metrics_and_shown_only_when_present() -> None:
    from gateway.bench.report import markdown
    from gateway.bench.scrape import gpu_peak_mib

    metrics = (
        "# TYPE embed_gateway_cuda_memory_bytes gauge\n"
        'embed_gateway_cuda_memory_bytes{device="cuda:0",kind="allocated"} 1048576.0\n'
        'embed_gateway_cuda_memory_bytes{device="cuda:0",kind="peak_allocated"} 3145728.0\n'
    )
    assert gpu_peak_mib(metrics) == 3.0
    assert gpu_peak_mib("embed_gateway_requests_in_flight 0.0\n") is None
    base = {"machine": "m", "settings": {}, "workloads": {"facts": {"description": "d", "targets": [
        {"target": "gateway-hf", "tokens_per_second": 1.0}]}}}
    assert "peak GPU MiB" not in markdown(base)
    base["workloads"]["facts"]["targets"][0]["gpu_peak_mib"] = 3.0  # type: ignore[index]
    assert "peak GPU MiB" in markdown(base) and "| 3.00 |" in markdown(base)


def test_forward_seconds_are_read_from_the_engine_batch_histogram() -> None:
    from gateway.bench.scrape import forward_seconds

    metrics = (
        'embed_gateway_batch_duration_seconds_sum{engine="hf"} 12.5\n'
        'embed_gateway_batch_duration_seconds_sum{engine="vllm"} 99.0\n'
        'embed_gateway_batch_duration_seconds_count{engine="hf"} 7.0\n'
    )
    assert forward_seconds(metrics) == 12.5
    assert forward_seconds(metrics, "vllm") == 99.0
    assert forward_seconds("") == 0.0


def test_bench_command_runs_end_to_end_on_the_tiny_model(original_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    cmd = [
        sys.executable, "-m", "gateway.cli", "bench", "--model", str(original_dir), "--out", str(out),
        "--workloads", "facts,mixed", "--targets", "gateway-hf,naive,ceiling", "--device", "cpu",
        "--requests", "facts=12", "--requests", "mixed=6", "--concurrency", "4", "--max-seconds", "60",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads((out / "bench.json").read_text())
    assert set(data["workloads"]) == {"facts", "mixed", "mixed-single-task"}
    for rows in data["workloads"].values():
        by = {r["target"]: r for r in rows["targets"]}
        assert set(by) == {"gateway-hf", "naive", "ceiling"}
        assert by["gateway-hf"]["errors"] == 0 and by["gateway-hf"]["tokens_per_second"] > 0
        assert by["gateway-hf"]["peak_rss_mib"] > 0
        # the engine's busy share comes from the server's own /metrics; passes alone are at least as fast
        assert 0 < by["gateway-hf"]["busy_fraction"] <= 1.05
        assert by["gateway-hf"]["forward_tokens_per_second"] >= by["gateway-hf"]["tokens_per_second"]
        assert by["ceiling"]["best_tokens_per_second"] >= by["ceiling"]["tokens_per_second"] > 0
        # timed once before and once after the served run; the row is their mean and their spread
        runs = by["ceiling"]["runs_tokens_per_second"]
        assert len(runs) == 2 and min(runs) <= by["ceiling"]["tokens_per_second"] * 1.001 and by["ceiling"]["spread"] >= 0
    assert data["settings"]["attention"] == "auto"
    assert data["idle_forward"]["tokens"] > 0 and data["idle_gateway_hf"]["p50_ms"] > 0
    # the bare pass was timed alternately with requests to the running gateway
    assert data["idle_forward"]["served_p50_ms"] > 0 and data["idle_forward"]["served_over_bare"] > 0
    assert "idle 20-token request p50 / bare forward, alternated" in {c["name"] for c in data["checks"]}
    assert "| gateway-hf |" in (out / "bench.md").read_text() and "engine busy" in (out / "bench.md").read_text()
    assert {c["name"] for c in data["checks"]} >= {"mixed tasks / single task (gateway-hf)"}


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_open_loop_keeps_arriving_while_closed_loop_waits_for_answers(mode: str) -> None:
    """Against the real app over HTTP, with an engine that answers nothing until all 6 requests are
    in: the open loop sends them all at its rate regardless (all answered); a closed loop of 2
    clients never has more than 2 in flight (the engine is released after a while to end it)."""
    engine = HeldEngine()
    reqs = [BenchRequest((f"fact {i}",), "text-matching", (4,)) for i in range(6)]
    with live_server(load_settings(), {"held": engine}) as s:
        arrived: list[int] = []

        def release_when_all_arrived() -> None:
            deadline = time.monotonic() + 3
            while engine.entered < len(reqs) and time.monotonic() < deadline:
                time.sleep(0.01)
            arrived.append(engine.entered)
            s.loop.call_soon_threadsafe(engine.release.set)  # type: ignore[union-attr]

        watcher = threading.Thread(target=release_when_all_arrived)
        watcher.start()
        url = s.url + "/v1/embeddings"
        if mode == "open":
            samples, wall = asyncio.run(open_loop(url, reqs, gateway_body, rate=50, max_seconds=30))
        else:
            samples, wall = asyncio.run(closed_loop(url, reqs, gateway_body, concurrency=2, max_seconds=30))
        watcher.join()
    assert len(samples) == len(reqs) and all(x.ok for x in samples)
    assert arrived == ([len(reqs)] if mode == "open" else [2])


def test_the_bench_client_sends_what_the_real_app_reads_and_counts_its_usage() -> None:
    """The bench's client against the real app over HTTP, beside httpx: the same answer's usage is
    counted; an answer that is an error is a failed sample with its status; no server is status 0."""
    import httpx

    good = BenchRequest(("the user likes coffee", "and tea in the afternoon"), "text-matching", (5, 7))
    with live_server(load_settings(), {"fake": FakeEngine()}) as s:
        url = s.url + "/v1/embeddings"
        usage = httpx.post(url, json=gateway_body(good), timeout=30).json()["usage"]

        async def go() -> list[Sample]:
            async with BenchClient(url, connections=2, timeout=30) as client:
                sent = [client.prepare(good, gateway_body), client.prepare(good, lambda r: {"input": [], "model": "x"}),
                        client.prepare(good, gateway_body)]
                return [await client.send(p) for p in sent]  # the third reuses the kept-alive connection

        ok, bad, again = asyncio.run(go())
    assert ok.ok and again.ok and ok.tokens == again.tokens == usage["prompt_tokens"] and ok.texts == 2
    assert not bad.ok and bad.status == 400 and bad.tokens == 0

    async def nobody() -> Sample:
        async with BenchClient(s.url + "/v1/embeddings", connections=1, timeout=5) as client:
            return await client.send(client.prepare(good, gateway_body))

    gone = asyncio.run(nobody())  # the server is down now
    assert not gone.ok and gone.status == 0
    with pytest.raises(ValueError, match="plain http"):
        BenchClient("https://example.invalid/v1/embeddings", connections=1)


def test_the_bench_vllm_takes_every_core_unless_the_environment_binds_it(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gateway.bench.servers import vllm_server

    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    every, _ = vllm_server("python", "/m", "float32", tmp_path)
    assert every.env["VLLM_CPU_OMP_THREADS_BIND"] == f"0-{(os.cpu_count() or 1) - 1}"
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "1")
    bound, _ = vllm_server("python", "/m", "float32", tmp_path)
    assert bound.env["VLLM_CPU_OMP_THREADS_BIND"] == "1"

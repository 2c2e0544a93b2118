"""The models bench (``python -m gateway.bench.models``: several models behind one gateway), the
in-process engine race (``python -m gateway.bench.engine_race``) and the pair race of a
sentence-transformers checkpoint: their arguments, the gateway configuration they write, and tiny
real runs whose JSON is read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.bench.engine_race import parse_batches
from gateway.bench.models import ServedModel, gateway_env, interleave, parse_serve, phase_order
from gateway.bench.workloads import BenchRequest


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine_hf.tools.st_checkpoint import write_st_checkpoint

    return write_st_checkpoint(tmp_path_factory.mktemp("st") / "tiny", max_seq_length=128)


@pytest.fixture(scope="module")
def m3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine_hf.tools.bge_m3_checkpoint import write_bge_m3_checkpoint

    return write_bge_m3_checkpoint(tmp_path_factory.mktemp("m3") / "tiny", seed=1)


def _run(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------- arguments and plans


def test_serve_specs_are_parsed_and_bad_ones_refused() -> None:
    assert parse_serve("bge-m3=bge-m3:/m/bge:v1") == ServedModel("bge-m3", "bge-m3", "/m/bge:v1")
    assert parse_serve("e5=sentence-transformers:rel/dir").kind == "sentence-transformers"
    for bad in ("e5", "e5=sentence-transformers", "=hf:/x", "e5=hf:", "e5=vllm:/x", "e5=openai:/x"):
        with pytest.raises(ValueError):
            parse_serve(bad)


def test_the_bench_gateway_configuration_is_one_the_gateway_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.catalog import build_catalog
    from gateway.config import load_settings

    models = [ServedModel("jina", "hf", "/m/jina"), ServedModel("e5", "sentence-transformers", "/m/e5")]
    env = gateway_env(models, device="cpu", dtype="float32", threads=2, extra={"EMBED_GATEWAY_LIMITS__REQUEST_TIMEOUT": "9"})
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(None)
    catalog = build_catalog(settings)
    assert list(catalog.models) == ["jina", "e5"] and settings.api.default_model == "jina"
    assert {n: catalog.model_of(n) for n in catalog.engines} == {"jina": "jina", "e5": "e5"}
    assert settings.engines.hf.enabled is False and settings.cache.memory_bytes == 0
    assert settings.limits.request_timeout == 9
    e5 = catalog.engines["e5"]
    assert (e5.kind, e5.model, e5.threads) == ("sentence-transformers", "/m/e5", 2)  # type: ignore[attr-defined]


def test_mixed_traffic_takes_turns_and_phases_rotate() -> None:
    reqs = {m: [BenchRequest((f"{m}{i}",), "text-matching", (3,)) for i in range(4)] for m in ("a", "b")}
    mixed = interleave(reqs, 6)
    assert [m for m, _ in mixed] == ["a", "b", "a", "b", "a", "b"]
    assert [r.texts[0] for _, r in mixed] == ["a0", "b0", "a1", "b1", "a2", "b2"]
    phases = ["alone:a", "alone:b", "mixed"]
    orders = [phase_order(phases, r) for r in range(3)]
    assert orders[0] == phases and orders[1] == ["alone:b", "mixed", "alone:a"]
    assert {o[0] for o in orders} == set(phases)  # every phase runs first once


def test_bad_command_lines_are_refused_before_anything_starts(tmp_path: Path) -> None:
    run = _run("gateway.bench.models", "--serve", "x=vllm:/tmp", timeout=120)
    assert run.returncode == 2 and "unknown kind 'vllm'" in run.stderr
    run = _run("gateway.bench.models", "--serve", f"x=hf:{tmp_path / 'absent'}", timeout=120)
    assert run.returncode == 2 and "no checkpoint folder" in run.stderr
    run = _run("gateway.bench.models", "--serve", f"x=hf:{tmp_path}", "--serve", f"x=bge-m3:{tmp_path}", timeout=120)
    assert run.returncode == 2 and "names a model twice" in run.stderr
    run = _run("gateway.bench.models", "--serve", f"x=hf:{tmp_path}", "--set", "NOVALUE", timeout=120)
    assert run.returncode == 2 and "KEY=VALUE" in run.stderr
    assert parse_batches("facts:32,passages:8") == [("facts", 32), ("passages", 8)]
    for bad in ("", "facts", "facts:0", "poems:3", "facts:x"):
        with pytest.raises(ValueError):
            parse_batches(bad)


# ---------------------------------------------------------------------------- tiny real runs


def _weight_bytes(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    for f in folder.glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            total += sum(st.get_tensor(k).float().nbytes for k in st.keys())  # noqa: SIM118
    return total


def test_two_models_behind_one_gateway_alone_and_mixed(original_dir: Path, st_dir: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    run = _run("gateway.bench.models", "--serve", f"jina=hf:{original_dir}", "--serve", f"e5=sentence-transformers:{st_dir}",
               "--requests", "4", "--concurrency", "2", "--rounds", "2", "--out", str(tmp_path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out: dict[str, Any] = json.loads(run.stdout)
    assert out == json.loads((tmp_path / "models.json").read_text())
    assert "[" in out["cpu"] and out["hardware"]["cpu"]["flags"]  # the CPU's flags with the figures
    assert set(out["phases"]) == {"alone:jina", "alone:e5", "mixed"} and len(out["rounds"]) == 2
    for name, phase in out["phases"].items():
        assert phase["errors"] == 0 and phase["requests"] == 8, name
        t = phase["tokens_per_second"]
        assert 0 < t["min"] <= t["median"] <= t["max"]
        assert phase["p50_ms"]["median"] <= phase["p99_ms"]["median"]
    assert set(out["phases"]["mixed"]["models"]) == {"jina", "e5"}
    assert out["phases"]["mixed"]["models"]["jina"]["requests"] == 4  # an equal share of each round's 4
    for row in out["rounds"]:
        mixed = row["mixed"]
        assert mixed["models"]["jina"]["tokens_per_second"] + mixed["models"]["e5"]["tokens_per_second"] == \
            pytest.approx(mixed["all"]["tokens_per_second"], abs=0.2)
    # memory: each engine reports its weights (the sentence-transformers engine in fp32: the
    # reference's parameter bytes; the jina engine: its modules, LoRA stacks included)
    st = out["models"]["e5"]
    ref = SentenceTransformer(str(st_dir), device="cpu")
    assert st["source"] == "reported" and st["resident_bytes"] == sum(p.numel() * 4 for p in ref.parameters())
    jina = out["models"]["jina"]
    assert jina["source"] == "reported" and 0.9 < jina["resident_bytes"] / _weight_bytes(original_dir) < 1.5
    assert 0 < out["memory"]["idle"]["rss_mib"] <= out["memory"]["after"]["peak_rss_mib"]
    md = (tmp_path / "models.md").read_text()
    assert md.startswith("CPU: ") and "| mixed | e5 |" in md and "| alone | jina |" in md


def test_the_sentence_transformers_engine_races_its_reference(st_dir: Path, tmp_path: Path) -> None:
    run = _run("gateway.bench.engine_race", "--kind", "sentence-transformers", "--model", str(st_dir),
               "--batches", "facts:4", "--rounds", "2", "--threads", "1", "--out", str(tmp_path / "race.json"))
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out == json.loads((tmp_path / "race.json").read_text()) and "[" in out["cpu"]
    [row] = out["results"]
    assert (row["batch"], row["texts"], row["outputs"]) == ("facts:4", 4, "dense")
    assert set(row["tokens_per_second"]) == {"engine", "sentence-transformers"}
    assert all(len(v["rounds"]) == 2 and v["median"] > 0 for v in row["tokens_per_second"].values())
    assert row["min_cosine_vs_engine"]["sentence-transformers"] > 0.99999  # the same vectors


def test_the_bge_m3_engine_races_flag_embedding(m3_dir: Path) -> None:
    run = _run("gateway.bench.engine_race", "--kind", "bge-m3", "--model", str(m3_dir),
               "--batches", "facts:3", "--rounds", "1", "--threads", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(run.stdout)["results"]
    assert [r["outputs"] for r in rows] == ["dense", "dense+sparse+colbert"]
    for r in rows:
        assert set(r["ours_over"]) == {"flag-encode", "flag-forward"}
        assert min(r["min_cosine_vs_engine"].values()) > 0.99999


def test_a_sentence_transformers_checkpoint_races_in_pairs(st_dir: Path, tmp_path: Path) -> None:
    run = _run("gateway.bench.pair", "--model", str(st_dir), "--kind", "sentence-transformers",
               "--a", "gateway:ENGINES__HF__ENABLED=false", "--b", "gateway", "--requests", "4", "--concurrency", "2",
               "--rounds", "1", "--settle", "0.2", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["kind"] == "sentence-transformers" and out["a_median"] > 0 and out["b_median"] > 0
    assert out["rounds"][0]["a_p50_ms"] <= out["rounds"][0]["a_p99_ms"]
    assert out["min_cosine_a_b"] > 0.99999  # both computed the same vectors
    run = _run("gateway.bench.pair", "--model", str(st_dir), "--kind", "sentence-transformers",
               "--a", "vllm", "--b", "gateway-hf", timeout=120)
    assert run.returncode == 2 and "target gateway" in run.stderr

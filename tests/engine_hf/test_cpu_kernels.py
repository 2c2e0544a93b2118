"""CPU paths (engine_hf.cpu_kernels): the oneDNN fp32 path is exact, bf16 and int8 are close and
say what they are, every path keeps per-row adapters and packed attention, and ``auto`` follows
the CPU's features (injected here, so the choice is tested on any machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine_hf.cpu_kernels import CpuFeatures, choose_kernels, detect_cpu, make_kernel
from engine_hf.device import numerics, resolve_precision
from engine_hf.settings import HFEngineSettings
from engine_hf.tools.verify import verify
from gateway.contract import EmbedJob, Task
from tests.engine_hf.conftest import start_engine
from tests.engine_hf.test_exactness import TASK_CASES, TEXTS, assert_close
from tests.support import late_reference as lr
from tests.support.harness import cosine

AVX2 = CpuFeatures("AVX2 box", frozenset({"avx", "avx2", "fma"}), "AuthenticAMD")
AVX512 = CpuFeatures("AVX-512 box", frozenset({"avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"}),
                     "AuthenticAMD")
INTEL = CpuFeatures("AMX box", AVX512.flags | {"amx_bf16", "amx_int8", "amx_tile"}, "GenuineIntel")
CPU = torch.device("cpu")
#: a mixed batch: every task and no task, short and long (per-row adapters in one pass)
MIXED = [(t, x) for t in TASK_CASES for x in TEXTS[:2] + TEXTS[4:]]


def test_auto_follows_the_cpu_features() -> None:
    f32, bf16 = torch.float32, torch.bfloat16
    assert choose_kernels("auto", AVX2, f32) == "torch"
    assert choose_kernels("auto", AVX512, f32) == "onednn"  # MKL would run its AVX2 code there
    assert choose_kernels("auto", INTEL, f32) == "torch"  # MKL runs AVX-512 on Intel's
    assert choose_kernels("auto", AVX512, bf16) == "torch"
    assert choose_kernels("auto", AVX2, bf16) == "torch"
    # a setting wins over the features
    assert choose_kernels("torch", AVX512, f32) == "torch"
    assert choose_kernels("onednn", AVX2, f32) == "onednn"
    with pytest.raises(ValueError, match="unknown cpu_kernels"):
        choose_kernels("mkl", AVX2, f32)


def test_dtype_auto_stays_exact_fp32_on_a_cpu_even_with_native_bf16() -> None:
    for cpu in (AVX512, INTEL):  # native bf16 on both: auto still means exact fp32
        assert cpu.native_bf16 and resolve_precision("auto", "auto", CPU, cpu)[0] == torch.float32
    assert resolve_precision("auto", "auto", CPU, AVX512) == (torch.float32, "onednn")
    assert resolve_precision("auto", "auto", CPU, AVX2) == (torch.float32, "torch")
    assert resolve_precision("bfloat16", "onednn", CPU, INTEL) == (torch.bfloat16, "onednn")
    assert resolve_precision("int8", "auto", CPU, AVX2) == (torch.float32, "int8")
    assert resolve_precision("auto", "auto", CPU, AVX512, compiled=True) == (torch.float32, "torch")
    with pytest.raises(ValueError, match="CPU only"):
        resolve_precision("int8", "auto", torch.device("cuda"), AVX512)
    with pytest.raises(ValueError, match="compile"):
        resolve_precision("int8", "auto", CPU, AVX512, compiled=True)
    assert [numerics(torch.float32, "onednn"), numerics(torch.bfloat16, "onednn"), numerics(torch.float32, "int8")] \
        == ["fp32-exact", "bf16", "int8"]


def test_int8_needs_the_onednn_quantised_engine_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """A torch build without oneDNN's quantised kernels (e.g. an ARM wheel) gets a clear start-up error."""
    monkeypatch.setattr(type(torch.backends.quantized), "supported_engines", property(lambda self: ["qnnpack", "none"]))
    with pytest.raises(ValueError, match="oneDNN quantised kernels"):
        resolve_precision("int8", "auto", CPU, AVX512)


def test_int8_kernel_quantises_per_channel_and_leaves_the_quantised_engine_as_it_was() -> None:
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(96, 64, generator=g) * 0.05, torch.randn(96, generator=g) * 0.05
    x = torch.randn(2, 7, 64, generator=g)
    before = torch.backends.quantized.engine
    kernel = make_kernel("int8", w, b)
    assert torch.backends.quantized.engine == before
    with torch.inference_mode():
        got, want = kernel(x), torch.nn.functional.linear(x, w, b)
    assert got.shape == want.shape == (2, 7, 96) and got.dtype == torch.float32
    assert float((got - want).norm() / want.norm()) < 0.02  # 8-bit error, not a wrong product
    assert not torch.equal(got, want)  # really quantised


def test_detected_features_are_this_machines() -> None:
    cpu = detect_cpu()
    assert cpu.name and cpu.flags
    assert cpu.avx512 == (torch.backends.cpu.get_cpu_capability() in ("AVX512", "AVX512_BF16"))  # torch agrees


def test_settings_reject_an_unknown_kernel() -> None:
    with pytest.raises(ValueError):
        HFEngineSettings(cpu_kernels="mkl")  # type: ignore[arg-type]


@pytest.mark.parametrize(("cpu", "kernels"), [(AVX2, "torch"), (AVX512, "onednn"), (INTEL, "torch")],
                         ids=["avx2", "avx512-amd", "avx512-intel"])
def test_the_engine_picks_and_reports_its_kernels(loop, original_dir, cpu, kernels) -> None:  # type: ignore[no-untyped-def]
    engine = start_engine(loop, original_dir, cpu)
    try:
        # the passes' process was made with the same CPU and would not start on other kernels
        assert engine.describe()["cpu_kernels"] == kernels and engine._placement.kernels == kernels
        assert engine.describe()["cpu"] == cpu.summary()
        caps = engine.capabilities
        assert caps.numerics == "fp32-exact" and caps.dtype == "float32"
        assert loop.run(engine.embed(EmbedJob(inputs=TEXTS[:1], task=None))).engine == "hf"
    finally:
        loop.run(engine.aclose())


@pytest.mark.parametrize("attention", ["packed", "padded"])
def test_onednn_fp32_equals_the_reference_every_task_and_is_batch_invariant(  # type: ignore[no-untyped-def]
    loop, original_dir, reference, attention
) -> None:
    # the passes in this process: the test runs the encoder's own batch below
    engine = start_engine(loop, original_dir, attention=attention, cpu_kernels="onednn", own_process=False)
    try:
        assert engine.encoder.kernels == "onednn"
        for task in TASK_CASES:
            got = loop.run(engine.embed(EmbedJob(inputs=TEXTS, task=task))).vectors
            assert_close(got, reference.encode(TEXTS, task.value if task else None, None, False))
        # one mixed-task pass of every length gives each text its own vector (per-row adapters)
        enc, text = engine.encoder, engine.text
        seqs = [text.encode([x], t, truncate=True)[0].ids for t, x in MIXED]
        rows = [-1 if t is None else enc.task_index[t] for t, _ in MIXED]
        got = enc.pooled_batch(seqs, rows, packed=attention == "packed").numpy()
        want = np.stack([reference.encode([x], t.value if t else None, None, False)[0] for t, x in MIXED])
        assert_close(got, want)
    finally:
        loop.run(engine.aclose())


def test_onednn_late_chunking_equals_the_reference(loop, original_dir, reference) -> None:  # type: ignore[no-untyped-def]
    engine = start_engine(loop, original_dir, cpu_kernels="onednn")
    try:
        chunks = ["the user likes coffee.", "she walks the dog in the park.", "on fridays she reads."]
        got = loop.run(engine.embed(EmbedJob(inputs=chunks, task=Task.RETRIEVAL_PASSAGE, late_chunking=True))).vectors
        want = lr.late_chunk(reference, chunks, "retrieval.passage")
        assert_close(got, want)
    finally:
        loop.run(engine.aclose())


@pytest.mark.parametrize(("dtype", "kernels"), [("float32", "onednn"), ("bfloat16", "onednn"), ("int8", "auto")])
def test_every_path_keeps_per_row_adapters_and_packed_attention(loop, original_dir, dtype, kernels) -> None:  # type: ignore[no-untyped-def]
    """Per path: one mixed-task batch equals each task's own batch (per-row adapters), packed equals
    padded, and the vectors stay near fp32's (bf16/int8: >= 0.999 on the tiny random weights)."""
    from engine_hf.tools.baselines import load_encoder

    fp32, text = load_encoder(str(original_dir), "cpu", "float32")
    dt, kern = resolve_precision(dtype, kernels, CPU, INTEL)
    from engine_hf.model import JinaEncoder

    enc = JinaEncoder(fp32.info, device=CPU, dtype=dt, kernels=kern)
    assert enc.kernels == kern
    seqs, adapters = [], []
    for task, x in MIXED:
        seqs.append(text.encode([x], task, truncate=True)[0].ids)
        adapters.append(-1 if task is None else fp32.task_index[task])
    packed = enc.pooled_batch(seqs, adapters, packed=True).float()
    padded = enc.pooled_batch(seqs, adapters, packed=False).float()
    alone = torch.stack([enc.pooled_batch([s], [a], packed=True)[0].float() for s, a in zip(seqs, adapters, strict=True)])
    exact = fp32.pooled_batch(seqs, adapters, packed=False)
    tight = 0.99999 if dtype == "float32" else 0.999
    for i in range(len(seqs)):
        assert cosine(packed[i], alone[i]) >= tight and cosine(packed[i], padded[i]) >= tight
        assert cosine(packed[i], exact[i]) >= tight
    if dtype != "float32":  # not exact: the test would not notice a path that silently ran fp32
        assert min(cosine(packed[i], exact[i]) for i in range(len(seqs))) < 0.999999
    # the tasks really differ on this path too
    first = [packed[i] for i, (t, x) in enumerate(MIXED) if x == TEXTS[0]]
    assert max(cosine(first[i], first[j]) for i in range(len(first)) for j in range(i + 1, len(first))) < 0.999


def test_merged_adapters_on_onednn_and_int8(loop, original_dir, reference) -> None:  # type: ignore[no-untyped-def]
    exact = start_engine(loop, original_dir, adapter_mode="merged", cpu_kernels="onednn")
    int8 = start_engine(loop, original_dir, adapter_mode="merged", dtype="int8")
    try:
        for task in (Task.TEXT_MATCHING, None):
            want = reference.encode(TEXTS, task.value if task else None, None, False)
            assert_close(loop.run(exact.embed(EmbedJob(inputs=TEXTS, task=task))).vectors, want)
            got = loop.run(int8.embed(EmbedJob(inputs=TEXTS, task=task))).vectors
            assert min(cosine(g, w) for g, w in zip(got, want, strict=True)) >= 0.999
    finally:
        loop.run(exact.aclose())
        loop.run(int8.aclose())


def test_int8_engine_says_what_it_is(loop, original_dir) -> None:  # type: ignore[no-untyped-def]
    engine = start_engine(loop, original_dir, dtype="int8")
    try:
        caps = engine.capabilities
        assert caps.numerics == "int8" and caps.dtype == "int8"
        assert engine.describe()["numerics"] == "int8" and engine.describe()["cpu_kernels"] == "int8"
        result = loop.run(engine.embed(EmbedJob(inputs=TEXTS[:2], task=Task.SEPARATION)))
        assert result.engine == "hf:int8" and np.isfinite(result.vectors).all()
    finally:
        loop.run(engine.aclose())


def test_int8_identity_over_http_info_and_header(original_dir) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from gateway.config import load_settings
    from tests.support.server import live_server

    settings = load_settings(
        engines={"hf": {"model": str(original_dir), "device": "cpu", "dtype": "int8", "max_input_tokens": 64}},
        aliases={"jina-embeddings-v3-int8": {"task": "text-matching"}},
        api={"default_model": "jina-embeddings-v3-int8"},
    )
    with live_server(settings) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        resp = c.post("/v1/embeddings", json={"input": "the user likes coffee"})
        info = c.get("/info").json()
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-embed-engine"] == "hf:int8"
    assert resp.json()["model"] == "jina-embeddings-v3-int8"
    assert info["engines"]["hf"]["numerics"] == "int8" and info["engines"]["hf"]["dtype"] == "int8"


def test_exact_engine_shows_fp32_exact_in_info(original_dir) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from gateway.config import load_settings
    from tests.support.server import live_server

    settings = load_settings(engines={"hf": {"model": str(original_dir), "device": "cpu", "max_input_tokens": 64}})
    with live_server(settings) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        resp = c.post("/v1/embeddings", json={"input": "x"})
        info = c.get("/info").json()
    assert resp.headers["x-embed-engine"] == "hf"
    assert info["engines"]["hf"]["numerics"] == "fp32-exact"


def test_verify_int8_reports_the_quantisation_error_per_task(original_dir: Path) -> None:
    out = verify(str(original_dir), device="cpu", dtype="int8", threshold=0.999)
    assert out["numerics"] == "int8" and out["cpu_kernels"] == "int8" and out["cpu"]
    for mode in out["modes"].values():
        assert set(mode["per_task"]) == {t.value for t in Task} | {"none"}
        for row in mode["per_task"].values():
            assert 0.999 <= row["min_cosine"] < 0.999999 and 0.99 <= row["min_cosine_32"] <= 1.0
    strict = verify(str(original_dir), device="cpu", dtype="int8", attention=["packed"], threshold=0.9999999)
    assert strict["passed"] is False


def test_verify_cli_takes_int8(original_dir: Path) -> None:
    cmd = [sys.executable, "-m", "gateway.cli", "verify", "--model", str(original_dir), "--device", "cpu",
           "--attention", "packed", "--dtype", "int8"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["numerics"] == "int8" and len(out["modes"]["packed"]["per_task"]) == 6


def test_cpu_paths_races_onnx_runtime_on_one_task(original_dir: Path, onnx_dir: Path) -> None:
    from engine_hf.tools import cpu_paths

    threads = torch.get_num_threads()  # measure() sets them process-wide, as its CLI should
    try:
        out = cpu_paths.measure(str(original_dir), paths=["torch-fp32", "ort-fp32", "ort-int8"], threads=1,
                                repeats=1, with_gemm=False, batch=2, mixed=3, onnx=onnx_dir)
    finally:
        torch.set_num_threads(threads)
    assert out["tasks"].startswith("text-matching")
    for workload, row in out["paths"]["ort-fp32"].items():
        assert row["min_cosine_vs_fp32"] >= 0.99999, workload  # ORT on the export computes our fp32 model
        assert row["tokens_per_second"] > 0
    int8 = out["paths"]["ort-int8"]
    assert all(0.99 < r["min_cosine_vs_fp32"] < 1.0 for r in int8.values()), int8
    with pytest.raises(ValueError, match="--onnx"):
        cpu_paths.measure(str(original_dir), paths=["ort-fp32"], threads=1, repeats=1, with_gemm=False)

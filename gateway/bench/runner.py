"""Run the whole race: start each server, drive each workload, collect numbers and memory.

Targets (each skipped when not asked for or not applicable):

* ``gateway-hf``   — this gateway, HF engine (all tasks)
* ``gateway-vllm`` — this gateway routing text-matching to a vLLM it points at
* ``vllm``         — the same vLLM server called directly (text-matching only)
* ``ort``          — ONNX Runtime on an fp32 export of the same weights, served as FastEmbed runs
  it (``gateway.bench.peers.ort_server``; the single-task workloads)
* ``naive``        — in-process Transformers, fixed batches of 32 in arrival order, padded
* ``ceiling``      — in-process bare forward on uniform-length batches (no serving overhead), the
  fastest of the forward paths timed (the engine's; ONNX Runtime's when ``ort`` races), next to
  the machine's measured GEMM peak (``engine_hf.tools.gemm_peak``)
* ``cache``        — opt-in: a Mem0-like workload with repeats, cache off / memory / Redis, and the
  idle latency of a hit (:mod:`gateway.bench.cache_bench`)

The other gateway targets run with the embedding cache off: they measure the engines.

Everything runs on loopback; every load is bounded in request count and time. The run is checked
against the targets it is given (:mod:`gateway.bench.checks`).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gateway.bench.checks import Check, evaluate
from gateway.bench.loadgen import BenchClient, BodyFn, closed_loop, open_loop
from gateway.bench.results import (
    BaselineOutput,
    BaselineRow,
    BenchResults,
    Busy,
    CeilingRow,
    ServedRow,
    WorkloadResult,
)
from gateway.bench.scrape import forward_seconds, gpu_peak_mib
from gateway.bench.servers import SERVED_NAME, Server, gateway_server, ort_server, vllm_server
from gateway.bench.stats import Summary, summarize
from gateway.bench.workloads import WORKLOADS, BenchRequest, make_workload, text_of_length
from gateway.contract import Task

__all__ = ["BenchSettings", "gateway_body", "gateway_env", "idle_request", "run_bench", "token_counter", "vllm_body",
           "vllm_only_env"]

_TEXT_MATCHING = Task.TEXT_MATCHING.value


#: every target ``--targets`` takes (the defaults run all but ``cache``)
TARGETS = ("gateway-hf", "gateway-vllm", "vllm", "ort", "naive", "ceiling", "cache")


@dataclass
class BenchSettings:
    model: str
    out_dir: Path
    workloads: Sequence[str] = ("facts", "passages", "mixed", "long")
    targets: Sequence[str] = tuple(t for t in TARGETS if t != "cache")
    requests: dict[str, int] = field(default_factory=lambda: {"facts": 256, "passages": 48, "mixed": 96, "long": 6})
    concurrency: int = 32
    rate: float | None = None
    max_seconds: float = 300.0
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    #: engines.hf.attention of the gateway, and the forward pass the ceiling is timed on
    attention: str = "auto"
    vllm_python: str | None = None
    vllm_model: str | None = None
    idle_requests: int = 30
    #: batch size (tokens) of the uniform batches the ceiling is measured on
    ceiling_batch_tokens: int = 1024
    seed: int = 0
    gateway_env: dict[str, str] = field(default_factory=dict)
    #: the targets the run is checked against (none: no checks)
    checks: Sequence[Check] = ()
    #: the ``cache`` target: requests of its Mem0-like workload, the share that repeat, its Redis
    cache_requests: int = 300
    cache_repeat: float = 0.7
    redis_url: str | None = None
    #: the ONNX export the ort peer and ceiling path run (default: exported into OUT/onnx when needed)
    onnx: str | None = None
    #: forward paths the ceiling is timed on (engine_hf.tools.baselines.FORWARD_PATHS); default:
    #: the engine's, plus ONNX Runtime's when ``ort`` races on a CPU
    ceiling_paths: Sequence[str] | None = None
    #: rows (tokens) of the GEMM the machine's peak is measured with
    gemm_rows: int = 2048

    def __post_init__(self) -> None:
        """Names nobody can run are refused before anything starts (one line, not a traceback later)."""
        unknown = [w for w in self.workloads if w not in WORKLOADS]
        if unknown:
            hint = " (mixed-single-task comes with mixed)" if "mixed-single-task" in unknown else ""
            raise ValueError(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}{hint}")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown:
            raise ValueError(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
        unknown = [w for w in self.requests if w not in WORKLOADS]
        if unknown:
            raise ValueError(f"--requests names unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")

    @property
    def on_cpu(self) -> bool:
        """Whether the engine runs on the CPU (``auto``: when torch sees no GPU, as the engine decides)."""
        import torch

        return not torch.cuda.is_available() if self.device == "auto" else torch.device(self.device).type == "cpu"

    def resolved_ceiling_paths(self) -> list[str]:
        if self.ceiling_paths is not None:
            return list(self.ceiling_paths)
        return ["engine", *(["ort"] if "ort" in self.targets and self.on_cpu else [])]

    def needs_onnx(self) -> bool:
        return "ort" in self.targets or ("ceiling" in self.targets and "ort" in self.resolved_ceiling_paths())


@dataclass(frozen=True, slots=True)
class _Workload:
    """One workload's requests, and the file the in-process baselines read them from."""

    requests: list[BenchRequest]
    file: Path
    description: str

    @property
    def text_matching_only(self) -> bool:
        return all(r.task == _TEXT_MATCHING for r in self.requests)

    @property
    def single_task(self) -> bool:
        return len({r.task for r in self.requests}) == 1


# --------------------------------------------------------------------------- inputs


def _write_requests(path: Path, reqs: Sequence[BenchRequest]) -> Path:
    path.write_text(json.dumps([{"texts": list(r.texts), "task": r.task} for r in reqs]))
    return path


def _prepare(s: BenchSettings, count: Callable[[str], int], tmp: Path) -> dict[str, _Workload]:
    """The seeded workloads asked for; after ``mixed``, the same texts all on one task (the
    single-task comparison, run right after it)."""
    work: dict[str, _Workload] = {}
    for name in s.workloads:
        reqs = make_workload(name, s.requests.get(name, 32), count, seed=s.seed)
        work[name] = _Workload(reqs, _write_requests(tmp / f"{name}.json", reqs), WORKLOADS[name].description)
        if name == "mixed":
            single = [BenchRequest(r.texts, _TEXT_MATCHING, r.tokens) for r in reqs]
            work["mixed-single-task"] = _Workload(single, _write_requests(tmp / "mixed-single-task.json", single),
                                                  WORKLOADS["mixed"].description + " — all text-matching")
    return work


def idle_request(seed: int, count: Callable[[str], int]) -> BenchRequest:
    """The short (20-token) text-matching request the idle latencies are measured with."""
    text, tokens = text_of_length(random.Random(seed), 20, count)
    return BenchRequest((text,), _TEXT_MATCHING, (tokens,))


# --------------------------------------------------------------------------- measuring


def gateway_body(req: BenchRequest) -> dict[str, Any]:
    """The request body the bench's clients send the gateway (and the ONNX Runtime peer)."""
    return {"model": SERVED_NAME, "input": list(req.texts), "task": req.task}


def vllm_body(req: BenchRequest) -> dict[str, Any]:
    """The body sent to vLLM: no task (it serves text-matching, its merged weights)."""
    return {"model": SERVED_NAME, "input": list(req.texts)}


def _drive(url: str, reqs: list[BenchRequest], body: BodyFn, s: BenchSettings) -> Summary:
    if s.rate:
        samples, wall = asyncio.run(open_loop(url, reqs, body, rate=s.rate, max_seconds=s.max_seconds, seed=s.seed))
    else:
        samples, wall = asyncio.run(closed_loop(url, reqs, body, concurrency=s.concurrency, max_seconds=s.max_seconds))
    return summarize(samples, wall)


def _idle(url: str, req: BenchRequest, body: BodyFn, n: int) -> Summary:
    """``n`` requests one at a time on a warm connection: latency without queueing."""

    async def go() -> tuple[list[Any], float]:
        async with BenchClient(url, connections=1, timeout=120) as client:
            prepared = client.prepare(req, body)
            await client.send(prepared)  # warm the connection
            t0 = time.perf_counter()
            out = [await client.send(prepared) for _ in range(n)]
            return out, time.perf_counter() - t0

    samples, wall = asyncio.run(go())
    return summarize(samples, wall)


def _metrics(url: str) -> str:
    return httpx.get(url + "/metrics", timeout=10).text


def _served_hf(srv: Server, url: str, reqs: list[BenchRequest], s: BenchSettings) -> ServedRow:
    """A load run through the HF gateway, with how busy its engine's worker was (from the server's
    own /metrics). Busy near 1.0 with a lower tokens/s than the ceiling means the passes themselves
    ran slower (batch make-up, the server's other threads), not that the scheduler left the
    hardware idle."""
    before = forward_seconds(_metrics(url))
    summary = _drive(url + "/v1/embeddings", reqs, gateway_body, s)
    after = _metrics(url)
    busy = Busy.of(summary, forward_seconds(after) - before)
    return ServedRow("gateway-hf", summary, srv.peak_rss(), busy, gpu_peak_mib(after))


@dataclass(frozen=True, slots=True)
class _Baselines:
    """The in-process baselines, each in its own process (``engine_hf.tools.baselines``)."""

    s: BenchSettings
    onnx: Path | None = None

    def run(self, mode: str, requests_file: Path, *extra: str) -> BaselineOutput:
        s = self.s
        cmd = [sys.executable, "-m", "engine_hf.tools.baselines", mode, "--model", s.model,
               "--requests", str(requests_file), "--device", s.device, "--dtype", s.dtype,
               "--max-batch-tokens", str(s.ceiling_batch_tokens), "--attention", s.attention]
        if mode == "ceiling":
            cmd += ["--paths", ",".join(s.resolved_ceiling_paths())]
            if self.onnx is not None:
                cmd += ["--onnx", str(self.onnx)]
        if s.threads:
            cmd += ["--threads", str(s.threads)]
        cmd += extra
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    def naive(self, w: _Workload) -> BaselineRow:
        return BaselineRow.of("naive", self.run("naive", w.file))


# --------------------------------------------------------------------------- the races


def gateway_env(s: BenchSettings, extra: dict[str, str]) -> dict[str, str]:
    """The environment of a bench gateway serving ``s.model`` (``extra`` added, and winning)."""
    return {
        "EMBED_GATEWAY_ENGINES__HF__MODEL": s.model,
        "EMBED_GATEWAY_ENGINES__HF__DEVICE": s.device,
        "EMBED_GATEWAY_ENGINES__HF__DTYPE": s.dtype,
        "EMBED_GATEWAY_ENGINES__HF__ATTENTION": s.attention,
        "EMBED_GATEWAY_SERVER__LOG_LEVEL": "warning",
        "EMBED_GATEWAY_CACHE__MEMORY_BYTES": "0",  # the engines' numbers (the cache target turns it on)
        "HF_HUB_OFFLINE": "1",
        **({"EMBED_GATEWAY_ENGINES__HF__THREADS": str(s.threads)} if s.threads else {}),
        **s.gateway_env,
        **extra,
    }


def _race_gateway_hf(s: BenchSettings, work: dict[str, _Workload], idle_req: BenchRequest, base: _Baselines,
                     results: BenchResults, tmp: Path) -> set[tuple[str, str]]:
    """The HF gateway on every workload, the in-process baselines next to each served run; returns
    the (workload, baseline) pairs already measured."""
    done: set[tuple[str, str]] = set()
    srv, url = gateway_server("gateway-hf", gateway_env(s, {}), s.out_dir)
    srv.start()
    try:
        results.idle_gateway_hf = _idle(url + "/v1/embeddings", idle_req, gateway_body, s.idle_requests)
        if "ceiling" in s.targets:
            # the bare pass of the same request, timed alternately with requests to the server (the
            # check's ratio): timed minutes apart, the two saw different machines on a shared VM
            results.idle_forward = base.run("single", _write_requests(tmp / "idle.json", [idle_req]),
                                            "--url", url + "/v1/embeddings", "--served-model", SERVED_NAME)
        for name, w in work.items():
            # This VM's speed drifts by minutes: the in-process baselines run next to the served
            # run (the server idles meanwhile), the ceiling once before and once after it.
            before = base.run("ceiling", w.file) if "ceiling" in s.targets else None
            results.add(name, _served_hf(srv, url, w.requests, s))
            if "naive" in s.targets:
                results.add(name, base.naive(w))
                done.add((name, "naive"))
            if before is not None:
                results.add(name, CeilingRow.of([before, base.run("ceiling", w.file)]))
                done.add((name, "ceiling"))
    finally:
        srv.stop()
    return done


def vllm_only_env(vllm_url: str, model: str) -> dict[str, str]:
    """A gateway in front of the vLLM at ``vllm_url`` serving ``model`` and nothing else (the HF
    engine off), tokenizing with the model's own tokenizer as a deployment next to its weights does."""
    return {"EMBED_GATEWAY_ENGINES__HF__ENABLED": "false", "EMBED_GATEWAY_ENGINES__VLLM__ENABLED": "true",
            "EMBED_GATEWAY_ENGINES__VLLM__URL": vllm_url, "EMBED_GATEWAY_ENGINES__VLLM__MODEL": SERVED_NAME,
            "EMBED_GATEWAY_ENGINES__VLLM__TOKENIZER": model,
            # the gateway waits for vLLM as long as the load generator waits for either
            "EMBED_GATEWAY_ENGINES__VLLM__READ_TIMEOUT": "600"}


def _race_vllm(s: BenchSettings, work: dict[str, _Workload], idle_req: BenchRequest, results: BenchResults) -> None:
    """vLLM directly and behind this gateway, on the text-matching workloads; then, idle and
    alternating, what the gateway adds to one request."""
    text_matching = [name for name, w in work.items() if w.text_matching_only]
    if not (s.vllm_python and {"vllm", "gateway-vllm"} & set(s.targets) and text_matching):
        return
    vsrv, vurl = vllm_server(s.vllm_python, s.vllm_model or s.model, s.dtype, s.out_dir)
    vsrv.start()
    try:
        if "vllm" in s.targets:
            for name in text_matching:
                summary = _drive(vurl + "/v1/embeddings", work[name].requests, vllm_body, s)
                results.add(name, ServedRow("vllm", summary, vsrv.peak_rss()))
        if "gateway-vllm" in s.targets:
            gsrv, gurl = gateway_server("gateway-vllm", gateway_env(s, vllm_only_env(vurl, s.vllm_model or s.model)), s.out_dir)
            gsrv.start()
            try:
                for name in text_matching:
                    summary = _drive(gurl + "/v1/embeddings", work[name].requests, gateway_body, s)
                    results.add(name, ServedRow("gateway-vllm", summary, gsrv.peak_rss()))
                if "vllm" in s.targets:
                    results.idle_overhead_vllm = _idle_overhead(s, gurl, vurl, idle_req)
            finally:
                gsrv.stop()
    finally:
        vsrv.stop()


def _race_ort(s: BenchSettings, work: dict[str, _Workload], onnx: Path, results: BenchResults) -> None:
    """The ONNX Runtime peer (FastEmbed's way) on the single-task workloads: it runs every task
    correctly, one task per batch, so unlike vLLM it races ``passages`` and ``long`` too."""
    single = [name for name, w in work.items() if w.single_task]
    if "ort" not in s.targets or not single:
        return
    srv, url = ort_server(onnx, s.model, s.threads, s.out_dir)
    srv.start()
    try:
        for name in single:
            summary = _drive(url + "/v1/embeddings", work[name].requests, gateway_body, s)
            results.add(name, ServedRow("ort", summary, srv.peak_rss()))
    finally:
        srv.stop()


def _export_onnx(s: BenchSettings) -> Path:
    """The export the ort targets run: ``--onnx`` as given, else OUT/onnx, exported (minutes at
    full size) unless an export of this checkpoint is already there."""
    if s.onnx:
        return Path(s.onnx)
    out = s.out_dir / "onnx"
    meta = out / "export.json"
    if meta.exists() and Path(json.loads(meta.read_text())["model"]).resolve() == Path(s.model).resolve():
        return out
    print(f"[bench] exporting {s.model} to ONNX in {out}", flush=True)
    done = subprocess.run([sys.executable, "-m", "engine_hf.tools.onnx_export", "--model", s.model, "--out", str(out)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the ONNX export failed (is the bench extra installed?):\n{done.stderr[-2000:]}")
    return out


def _hardware(s: BenchSettings) -> dict[str, Any]:
    """The CPU and its flags, the library versions, the threads; and, when the ceiling runs on a
    CPU, the machine's measured GEMM peak (in its own process)."""
    from gateway.bench.hardware import cpu_info, versions

    hw: dict[str, Any] = {"cpu": cpu_info(), "versions": versions(), "threads": s.threads or os.cpu_count()}
    if "ceiling" in s.targets and s.on_cpu:
        cmd = [sys.executable, "-m", "engine_hf.tools.gemm_peak", "--m", str(s.gemm_rows)]
        if s.threads:
            cmd += ["--threads", str(s.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        hw["gemm_peak"] = json.loads(out.stdout.strip().splitlines()[-1])
    return hw


def _precision_peak(gemm: dict[str, Any], dtype: str) -> tuple[str, float] | None:
    """The fastest GEMM path (mean GFLOP/s) of the precision the engine runs in (none for int8: no
    int8 GEMM peak is measured, and the fp32 one would be no bound for it)."""
    if dtype == "int8":
        return None
    prefix = "bf16" if dtype in ("bfloat16", "bf16") else "fp32"
    paths = {k: v["gflops"] for k, v in gemm.get("paths", {}).items() if k.startswith(prefix) and "gflops" in v}
    if not paths:
        return None
    best = max(paths, key=lambda k: paths[k])
    return best, paths[best]


def _gemm_bounds(s: BenchSettings, work: dict[str, _Workload], results: BenchResults) -> None:
    """Each workload's tokens/s at the machine's GEMM peak: the bound no forward path can beat."""
    from engine_hf.checkpoint import describe_checkpoint, resolve_model_dir
    from gateway.bench.hardware import flops_per_token, gemm_bound

    hw = results.hardware or {}
    peak = _precision_peak(hw.get("gemm_peak", {}), s.dtype)
    if peak is None:
        return
    config = describe_checkpoint(resolve_model_dir(s.model)).raw_config
    hw["gemm_peak"]["used"] = {"path": peak[0], "gflops": peak[1]}
    hw["flops_per_token"] = {str(n): flops_per_token(config, n) for n in (16, 128, 512, 2048)}
    for name, w in work.items():
        lengths = [n for r in w.requests for n in r.tokens]
        results.workloads[name].gemm_bound_tokens_per_second = round(gemm_bound(config, lengths, peak[1]), 1)


def _idle_overhead(s: BenchSettings, gateway: str, vllm: str, idle_req: BenchRequest) -> dict[str, Any]:
    from gateway.bench.overhead import measure

    try:
        return measure(gateway, vllm, requests=s.idle_requests, warmup=5, model=SERVED_NAME, text=idle_req.texts[0])
    except SystemExit as exc:  # the gateway did not serve with vLLM: say so, run on
        return {"error": str(exc)}


def _race_cache(s: BenchSettings, count: Callable[[str], int], results: BenchResults) -> None:
    """The Mem0-like workload with repeats through a gateway per cache mode (off / memory / Redis),
    and the idle latency of a hit (:mod:`gateway.bench.cache_bench`)."""
    from gateway.bench.cache_bench import mem0_workload, run_cache_bench

    reqs = mem0_workload(s.cache_requests, count, repeat=s.cache_repeat, seed=s.seed)
    distinct = len({r.texts for r in reqs})
    results.workloads["mem0"] = WorkloadResult(
        f"Mem0-like facts, {round(100 * s.cache_repeat)}% repeats ({distinct} distinct of {len(reqs)}), "
        "text-matching, 1 per request: cache off / memory / Redis",
        len(reqs), sum(sum(r.tokens) for r in reqs),
    )
    results.idle_cache = run_cache_bench(s, reqs, results)


def _in_process_rest(s: BenchSettings, work: dict[str, _Workload], base: _Baselines, results: BenchResults,
                     done: set[tuple[str, str]]) -> None:
    """The baselines without a gateway-hf run to sit next to."""
    for mode in ("naive", "ceiling"):
        if mode not in s.targets:
            continue
        for name, w in work.items():
            if (name, mode) not in done:
                results.add(name, base.naive(w) if mode == "naive" else CeilingRow.of([base.run(mode, w.file)]))


def token_counter(model: str) -> Callable[[str], int]:
    """Tokens of one text as the model counts them (``<s>`` and ``</s>`` included): what the
    workloads are sized by and every target's tokens/s is counted in."""
    from engine_hf.tokenization import load_tokenizer

    tok = load_tokenizer(Path(model))
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids) + 2


def run_bench(s: BenchSettings) -> BenchResults:
    s.out_dir.mkdir(parents=True, exist_ok=True)
    count = token_counter(s.model)
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    work = _prepare(s, count, tmp)
    idle_req = idle_request(s.seed, count)
    results = BenchResults(
        machine=f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
        settings={"model": s.model, "device": s.device, "dtype": s.dtype, "threads": s.threads,
                  "attention": s.attention, "concurrency": s.concurrency, "rate": s.rate, "seed": s.seed},
        workloads={name: WorkloadResult(w.description, len(w.requests), sum(sum(r.tokens) for r in w.requests))
                   for name, w in work.items()},
    )
    results.hardware = _hardware(s)
    _gemm_bounds(s, work, results)
    onnx = _export_onnx(s) if s.needs_onnx() else None
    base = _Baselines(s, onnx)
    done = _race_gateway_hf(s, work, idle_req, base, results, tmp) if "gateway-hf" in s.targets else set()
    if onnx is not None:
        _race_ort(s, work, onnx, results)
    _race_vllm(s, work, idle_req, results)
    if "cache" in s.targets:
        _race_cache(s, count, results)
    _in_process_rest(s, work, base, results, done)
    results.checks = evaluate(results.as_dict(), s.checks)
    return results

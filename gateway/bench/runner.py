"""Run the whole race: start each server, drive each workload, collect numbers and memory.

Targets (each skipped when not asked for or not applicable):

* ``gateway-hf``   — this gateway, HF engine (all tasks)
* ``gateway-vllm`` — this gateway routing text-matching to a vLLM it points at
* ``vllm``         — the same vLLM server called directly (text-matching only)
* ``naive``        — in-process Transformers, fixed batches of 32 in arrival order, padded
* ``ceiling``      — in-process bare forward on uniform-length batches (no serving overhead)
* ``cache``        — opt-in: a Mem0-like workload with repeats, cache off / memory / Redis, and the
  idle latency of a hit (:mod:`gateway.bench.cache_bench`)

The other gateway targets run with the embedding cache off: they measure the engines.

Everything runs on loopback; every load is bounded in request count and time.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gateway.bench.loadgen import BodyFn, closed_loop, open_loop
from gateway.bench.stats import summarize
from gateway.bench.workloads import WORKLOADS, BenchRequest, make_workload, text_of_length

__all__ = ["BenchSettings", "run_bench"]

SERVED_NAME = "jina-embeddings-v3"


@dataclass
class BenchSettings:
    model: str
    out_dir: Path
    workloads: Sequence[str] = ("facts", "passages", "mixed", "long")
    targets: Sequence[str] = ("gateway-hf", "naive", "ceiling")
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
    #: the ``cache`` target: requests of its Mem0-like workload, the share that repeat, its Redis
    cache_requests: int = 300
    cache_repeat: float = 0.7
    redis_url: str | None = None


# --------------------------------------------------------------------------- processes


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def tree_peak_rss_mib(pid: int) -> float:
    """Sum of peak RSS (VmHWM) of a process and its descendants, MiB."""
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
        todo.extend(_children(p))
    return round(total, 1)


class Server:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], health: str, log: Path) -> None:
        self.name, self.cmd, self.env, self.health, self.log = name, cmd, env, health, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 600) -> None:
        self.proc = subprocess.Popen(
            self.cmd, env={**os.environ, **self.env}, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up; see {self.log}")
            try:
                if httpx.get(self.health, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} not healthy after {timeout}s; see {self.log}")

    def peak_rss(self) -> float | None:
        return tree_peak_rss_mib(self.proc.pid) if self.proc else None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def gpu_peak_mib(metrics_text: str) -> float | None:
    """Most GPU memory the server's tensors took at once (its /metrics), MiB; None without CUDA."""
    peak = None
    for line in metrics_text.splitlines():
        if line.startswith("embed_gateway_cuda_memory_bytes{") and 'kind="peak_allocated"' in line:
            value = float(line.rsplit(" ", 1)[1]) / 2**20
            peak = value if peak is None else max(peak, value)
    return None if peak is None else round(peak, 1)


def forward_seconds(metrics_text: str, engine: str = "hf") -> float:
    """Seconds the engine's worker has spent in forward passes so far (its /metrics)."""
    prefix = f'embed_gateway_batch_duration_seconds_sum{{engine="{engine}"}} '
    return sum(float(line[len(prefix):]) for line in metrics_text.splitlines() if line.startswith(prefix))


def _drive_hf(url: str, reqs: list[BenchRequest], s: BenchSettings) -> dict[str, Any]:
    """``_drive`` plus how busy the HF engine's worker was: the share of the wall time spent in
    forward passes (1.0 = never idle) and the tokens/s of those passes alone. Busy near 1.0 with
    a lower tokens/s than the ceiling means the passes themselves ran slower (batch make-up, the
    server's other threads), not that the scheduler left the hardware idle."""
    before = forward_seconds(httpx.get(url + "/metrics", timeout=10).text)
    row = _drive(url + "/v1/embeddings", reqs, _gateway_body, s)
    busy = forward_seconds(httpx.get(url + "/metrics", timeout=10).text) - before
    if busy > 0 and row.get("wall_seconds"):
        row["busy_fraction"] = round(busy / row["wall_seconds"], 3)
        row["forward_tokens_per_second"] = round(row["tokens_per_second"] * row["wall_seconds"] / busy, 1)
    return row


def _gateway_memory(srv: Server, url: str) -> dict[str, Any]:
    row: dict[str, Any] = {"peak_rss_mib": srv.peak_rss()}
    try:
        gpu = gpu_peak_mib(httpx.get(url + "/metrics", timeout=10).text)
    except httpx.HTTPError:
        gpu = None
    if gpu is not None:
        row["gpu_peak_mib"] = gpu
    return row


# --------------------------------------------------------------------------- running


def _gateway_body(req: BenchRequest) -> dict[str, Any]:
    return {"model": SERVED_NAME, "input": list(req.texts), "task": req.task}


def _vllm_body(req: BenchRequest) -> dict[str, Any]:
    return {"model": SERVED_NAME, "input": list(req.texts)}


def _drive(url: str, reqs: list[BenchRequest], body: BodyFn, s: BenchSettings) -> dict[str, Any]:
    if s.rate:
        samples, wall = asyncio.run(open_loop(url, reqs, body, rate=s.rate, max_seconds=s.max_seconds, seed=s.seed))
    else:
        samples, wall = asyncio.run(closed_loop(url, reqs, body, concurrency=s.concurrency, max_seconds=s.max_seconds))
    return summarize(samples, wall).as_dict()


def _idle(url: str, req: BenchRequest, body: BodyFn, n: int) -> dict[str, Any]:
    async def go() -> tuple[list[Any], float]:
        from gateway.bench.loadgen import send

        async with httpx.AsyncClient(timeout=120) as client:
            await send(client, url, req, body)  # warm the connection
            t0 = time.perf_counter()
            out = [await send(client, url, req, body) for _ in range(n)]
            return out, time.perf_counter() - t0

    samples, wall = asyncio.run(go())
    return summarize(samples, wall).as_dict()


def _baseline(mode: str, s: BenchSettings, reqs_file: Path, extra: Sequence[str] = ()) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "engine_hf.baselines", mode, "--model", s.model, "--requests", str(reqs_file),
           "--device", s.device, "--dtype", s.dtype, "--max-batch-tokens", str(s.ceiling_batch_tokens),
           "--attention", s.attention, *extra]
    if s.threads:
        cmd += ["--threads", str(s.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _gateway_server(name: str, s: BenchSettings, env: dict[str, str]) -> tuple[Server, str]:
    port = _free_port()
    base = {
        "EMBED_GATEWAY_ENGINES__HF__MODEL": s.model,
        "EMBED_GATEWAY_ENGINES__HF__DEVICE": s.device,
        "EMBED_GATEWAY_ENGINES__HF__DTYPE": s.dtype,
        "EMBED_GATEWAY_ENGINES__HF__ATTENTION": s.attention,
        "EMBED_GATEWAY_SERVER__LOG_LEVEL": "warning",
        "EMBED_GATEWAY_CACHE__MEMORY_BYTES": "0",  # the engines' numbers (the cache target turns it on)
        "HF_HUB_OFFLINE": "1",
        **({"EMBED_GATEWAY_ENGINES__HF__THREADS": str(s.threads)} if s.threads else {}),
        **s.gateway_env,
        **env,
    }
    url = f"http://127.0.0.1:{port}"
    srv = Server(name, [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)], base, url + "/ready",
                 s.out_dir / f"{name}.log")
    return srv, url


def _vllm_server(s: BenchSettings) -> tuple[Server, str]:
    assert s.vllm_python
    port = _free_port()
    cores = os.cpu_count() or 1
    env = {
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{cores - 1}",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }
    cmd = [s.vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", s.vllm_model or s.model,
           "--served-model-name", SERVED_NAME, "--trust-remote-code", "--runner", "pooling",
           "--dtype", "float32" if s.dtype in ("auto", "float32") else s.dtype, "--max-model-len", "8192",
           "--host", "127.0.0.1", "--port", str(port), "--disable-log-stats",
           # a fixed KV budget instead of a fraction of (shared) memory; pooling models barely use it
           "--kv-cache-memory-bytes", str(1024 * 2**20)]
    url = f"http://127.0.0.1:{port}"
    return Server("vllm", cmd, env, url + "/health", s.out_dir / "vllm.log"), url


def run_bench(s: BenchSettings) -> dict[str, Any]:
    from engine_hf.tokenization import load_tokenizer

    s.out_dir.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(Path(s.model))

    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False).ids) + 2

    work: dict[str, list[BenchRequest]] = {}
    for name in s.workloads:
        work[name] = make_workload(name, s.requests.get(name, 32), count, seed=s.seed)
        if name == "mixed":  # the same texts, all on one task: the single-task comparison, run right after
            work["mixed-single-task"] = [BenchRequest(r.texts, "text-matching", r.tokens) for r in work["mixed"]]
    idle_text, idle_tokens = text_of_length(random.Random(s.seed), 20, count)
    idle_req = BenchRequest((idle_text,), "text-matching", (idle_tokens,))
    results: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
        "settings": {"model": s.model, "device": s.device, "dtype": s.dtype, "threads": s.threads, "attention": s.attention,
                     "concurrency": s.concurrency, "rate": s.rate, "seed": s.seed},
        "workloads": {},
    }
    files = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    for name, reqs in work.items():
        files[name] = tmp / f"{name}.json"
        files[name].write_text(json.dumps([{"texts": list(r.texts), "task": r.task} for r in reqs]))
        desc = WORKLOADS["mixed"].description + " — all text-matching" if name == "mixed-single-task" else WORKLOADS[name].description
        results["workloads"][name] = {"description": desc, "requests": len(reqs),
                                      "tokens": sum(sum(r.tokens) for r in reqs), "targets": []}

    def add(workload: str, target: str, row: dict[str, Any]) -> None:
        results["workloads"][workload]["targets"].append({"target": target, **row})
        print(f"[bench] {workload:18s} {target:13s} {row.get('tokens_per_second', 0):>9.1f} tok/s", flush=True)

    text_matching = [w for w in work if all(r.task == "text-matching" for r in work[w])]

    def baseline_row(mode: str, name: str) -> dict[str, Any]:
        r = _baseline(mode, s, files[name])
        return {"tokens_per_second": round(r["tokens_per_second"], 1), "peak_rss_mib": r.get("peak_rss_mib"),
                "wall_seconds": round(r["seconds"], 2)}

    def ceiling_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
        """The ceiling of ``runs`` (one, or one before and one after the served run): mean seconds,
        and how far apart they were — the machine's drift while the served run was measured."""
        seconds = sum(r["seconds"] for r in runs) / len(runs)
        tps = [r["tokens_per_second"] for r in runs]
        row = {"tokens_per_second": round(runs[0]["tokens"] / seconds, 1), "wall_seconds": round(seconds, 2),
               "peak_rss_mib": max(r.get("peak_rss_mib") or 0 for r in runs),
               "best_tokens_per_second": round(max(r["best_tokens_per_second"] for r in runs), 1)}
        if len(runs) > 1:
            row["runs_tokens_per_second"] = [round(x, 1) for x in tps]
            row["spread"] = round((max(tps) - min(tps)) / (sum(tps) / len(tps)), 3)
        return row

    done: set[tuple[str, str]] = set()
    if "gateway-hf" in s.targets:
        srv, url = _gateway_server("gateway-hf", s, {})
        srv.start()
        try:
            results["idle_gateway_hf"] = _idle(url + "/v1/embeddings", idle_req, _gateway_body, s.idle_requests)
            if "ceiling" in s.targets:  # the bare pass of the same request, right after (same machine state)
                one = tmp / "idle.json"
                one.write_text(json.dumps([{"texts": list(idle_req.texts), "task": "text-matching"}]))
                results["idle_forward"] = _baseline("single", s, one)
            for name, reqs in work.items():
                # This VM's speed drifts by minutes: the in-process baselines run next to the served
                # run (the server idles meanwhile), the ceiling once before and once after it.
                before = _baseline("ceiling", s, files[name]) if "ceiling" in s.targets else None
                add(name, "gateway-hf", {**_drive_hf(url, reqs, s), **_gateway_memory(srv, url)})
                if "naive" in s.targets:
                    add(name, "naive", baseline_row("naive", name))
                    done.add((name, "naive"))
                if before is not None:
                    add(name, "ceiling", ceiling_row([before, _baseline("ceiling", s, files[name])]))
                    done.add((name, "ceiling"))
        finally:
            srv.stop()

    if s.vllm_python and ({"vllm", "gateway-vllm"} & set(s.targets)) and text_matching:
        vsrv, vurl = _vllm_server(s)
        vsrv.start()
        try:
            if "vllm" in s.targets:
                for name in text_matching:
                    add(name, "vllm", {**_drive(vurl + "/v1/embeddings", work[name], _vllm_body, s), "peak_rss_mib": vsrv.peak_rss()})
            if "gateway-vllm" in s.targets:
                # the gateway waits for vLLM as long as the load generator waits for either
                env = {"EMBED_GATEWAY_ENGINES__HF__ENABLED": "false", "EMBED_GATEWAY_ENGINES__VLLM__ENABLED": "true",
                       "EMBED_GATEWAY_ENGINES__VLLM__URL": vurl, "EMBED_GATEWAY_ENGINES__VLLM__MODEL": SERVED_NAME,
                       "EMBED_GATEWAY_ENGINES__VLLM__READ_TIMEOUT": "600"}
                gsrv, gurl = _gateway_server("gateway-vllm", s, env)
                gsrv.start()
                try:
                    for name in text_matching:
                        add(name, "gateway-vllm", {**_drive(gurl + "/v1/embeddings", work[name], _gateway_body, s),
                                                   "peak_rss_mib": gsrv.peak_rss()})
                    if "vllm" in s.targets:  # idle, alternating: what the gateway adds to one request
                        from engine_vllm.overhead import measure

                        try:
                            results["idle_overhead_vllm"] = measure(gurl, vurl, requests=s.idle_requests, warmup=5,
                                                                    model=SERVED_NAME, text=idle_req.texts[0])
                        except SystemExit as exc:  # the gateway did not serve with vLLM: say so, run on
                            results["idle_overhead_vllm"] = {"error": str(exc)}
                finally:
                    gsrv.stop()
        finally:
            vsrv.stop()

    if "cache" in s.targets:
        from gateway.bench.cache_bench import mem0_workload, run_cache_bench

        reqs = mem0_workload(s.cache_requests, count, repeat=s.cache_repeat, seed=s.seed)
        distinct = len({r.texts for r in reqs})
        results["workloads"]["mem0"] = {
            "description": f"Mem0-like facts, {round(100 * s.cache_repeat)}% repeats ({distinct} distinct of "
                           f"{len(reqs)}), text-matching, 1 per request: cache off / memory / Redis",
            "requests": len(reqs), "tokens": sum(sum(r.tokens) for r in reqs), "targets": []}
        results["idle_cache"] = run_cache_bench(s, reqs, add)

    for mode in ("naive", "ceiling"):  # without a gateway-hf run to sit next to
        if mode not in s.targets:
            continue
        for name in work:  # (the cache's mem0 workload is not in ``work``: it has no baselines)
            if (name, mode) not in done:
                add(name, mode, baseline_row(mode, name) if mode == "naive"
                    else ceiling_row([_baseline(mode, s, files[name])]))

    results["checks"] = checks(results)
    return results


def _metric(results: dict[str, Any], workload: str, target: str, key: str) -> float | None:
    for row in results["workloads"].get(workload, {}).get("targets", []):
        if row["target"] == target and key in row:
            return float(row[key])
    return None


def _tps(results: dict[str, Any], workload: str, target: str) -> float | None:
    return _metric(results, workload, target, "tokens_per_second")


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, evaluated on this run's numbers (skipped when a number is missing)."""
    out = []

    def check(name: str, measured: float | None, target: str, ok: bool | None) -> None:
        if measured is not None and ok is not None:
            out.append({"name": name, "measured": round(measured, 3), "target": target, "met": ok})

    def ratio(name: str, a: tuple[str, str], b: tuple[str, str], minimum: float, target: str) -> None:
        """tokens/s of (workload, target) ``a`` over ``b``, at least ``minimum``."""
        x, y = _tps(results, *a), _tps(results, *b)
        if x and y:
            check(name, x / y, target, x / y >= minimum)

    for w in ("passages", "mixed", "long"):
        ratio(f"{w}: gateway-hf / ceiling", (w, "gateway-hf"), (w, "ceiling"), 0.9, ">= 0.90")
    ratio("facts: gateway-hf / vllm", ("facts", "gateway-hf"), ("facts", "vllm"), 1.0, ">= 1.0")
    ratio("passages: gateway-hf / naive", ("passages", "gateway-hf"), ("passages", "naive"), 1.5, ">= 1.5")
    ratio("mixed tasks / single task (gateway-hf)", ("mixed", "gateway-hf"), ("mixed-single-task", "gateway-hf"),
          0.95, ">= 0.95")
    ratio("facts: gateway-vllm / vllm throughput", ("facts", "gateway-vllm"), ("facts", "vllm"), 0.97, ">= 0.97")
    # the gateway's own latency, one request at a time (under a saturating load p50 is queueing)
    overhead = results.get("idle_overhead_vllm")
    if overhead and "added_p50_ms" in overhead:
        added = overhead["added_p50_ms"]
        check("idle p50 added by gateway in front of vllm (ms)", added, "<= 1 ms", added <= 1.0)
    idle, fwd = results.get("idle_gateway_hf"), results.get("idle_forward")
    if idle and fwd:
        idle_ratio = idle["p50_ms"] / (fwd["seconds"] * 1000)
        check("idle 20-token request p50 / bare forward", idle_ratio, "<= 1.10", idle_ratio <= 1.1)
    return out

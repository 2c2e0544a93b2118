"""Measure every CPU path side by side: ``python -m engine_hf.tools.cpu_paths --model DIR``.

One process, one set of weights (shared where the path does not repack them), every path:
torch fp32 (the engine before :mod:`engine_hf.cpu_kernels`), oneDNN fp32 (the exact default on
AVX-512), torch bf16, oneDNN bf16 and int8; with ``--onnx DIR`` (an export of the same weights,
:mod:`engine_hf.tools.onnx_export`) also ONNX Runtime on it in fp32 and dynamically quantised to
int8 (``ort-fp32``, ``ort-int8``: the peers the CPU targets were set against), every path then on one task (ONNX
Runtime takes one ``task_id`` per batch; the torch paths otherwise mix the five). Two workloads: a
padded batch of 16 x 128 tokens and a packed batch of mixed lengths (short facts to a passage,
~1k tokens). Rounds are interleaved (every path once per round) so drift on a shared machine hits
every path alike; medians are reported with the load average seen during the run. Fidelity: the
lowest cosine per task of each path's pooled vectors against torch fp32's, over the full vectors
and their first 32 dimensions.

Also measures each linear shape of the model alone (``--gemm``): GFLOP/s of every kernel, the
figure the kernel choice rests on. Prints one JSON object; every figure comes with the CPU's model
and flags.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from engine_hf.checkpoint import describe_checkpoint, resolve_model_dir
from engine_hf.cpu_kernels import KernelName, detect_cpu, keep_freed_memory, make_kernel
from engine_hf.layouts import load_weights
from engine_hf.model import JinaEncoder
from gateway.contract import Task

__all__ = ["ORT_PATHS", "PATHS", "gemm", "measure"]

#: name -> (dtype, kernels)
PATHS: dict[str, tuple[torch.dtype, KernelName]] = {
    "torch-fp32": (torch.float32, "torch"),
    "onednn-fp32": (torch.float32, "onednn"),
    "torch-bf16": (torch.bfloat16, "torch"),
    "onednn-bf16": (torch.bfloat16, "onednn"),
    "int8": (torch.float32, "int8"),
}
#: ONNX Runtime on the export (padded, one task per batch): name -> whether the export is quantised
ORT_PATHS: dict[str, bool] = {"ort-fp32": False, "ort-int8": True}
#: the packed workload: Mem0-like facts and a few passages
_MIXED = (12, 18, 25, 31, 40, 14, 22, 60, 96, 128, 17, 35, 180, 256, 9, 70)


def _median_time(fn: Callable[[], object]) -> float:
    return _timed(fn)[0]


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process) of one call. On a machine shared with other
    work the wall time includes waiting for a core; the CPU time does not (but counts spin-waits)."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def gemm(rows: int = 2048, repeats: int = 5) -> dict[str, dict[str, float]]:
    """GFLOP/s of every kernel on the model's four linear shapes (``rows`` tokens)."""
    shapes = {"qkv 1024->3072": (1024, 3072), "out 1024->1024": (1024, 1024),
              "fc1 1024->4096": (1024, 4096), "fc2 4096->1024": (4096, 1024)}
    g = torch.Generator().manual_seed(0)
    out: dict[str, dict[str, float]] = {}
    for label, (k, n) in shapes.items():
        x = torch.randn(rows, k, generator=g)
        w, b = torch.randn(n, k, generator=g) * 0.02, torch.randn(n, generator=g) * 0.02
        cases: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]] = {
            "torch-fp32": (make_kernel("torch", w, b), x),
            "onednn-fp32": (make_kernel("onednn", w, b), x),
            "torch-bf16": (make_kernel("torch", w.bfloat16(), b.bfloat16()), x.bfloat16()),
            "onednn-bf16": (make_kernel("onednn", w.bfloat16(), b.bfloat16()), x.bfloat16()),
            "int8": (make_kernel("int8", w, b), x),
        }
        times: dict[str, list[float]] = {c: [] for c in cases}
        with torch.inference_mode():
            for fn, arg in cases.values():
                fn(arg)
            for _ in range(repeats):
                for c, (fn, arg) in cases.items():
                    times[c].append(_median_time(lambda fn=fn, arg=arg: fn(arg)))
        out[label] = {c: round(2 * rows * k * n / statistics.median(ts) / 1e9, 1) for c, ts in times.items()}
    return out


def measure(
    model: str,
    *,
    paths: list[str],
    threads: int,
    repeats: int,
    with_gemm: bool,
    keep_memory: bool = True,
    batch: int = 16,
    mixed: int = len(_MIXED),
    onnx: Path | None = None,
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    allocator = keep_freed_memory() if keep_memory else False
    cpu = detect_cpu()
    info = describe_checkpoint(resolve_model_dir(model))
    weights = load_weights(info)
    cpu_dev = torch.device("cpu")
    encoders = {p: JinaEncoder(info, device=cpu_dev, dtype=PATHS[p][0], kernels=PATHS[p][1], weights=weights)
                for p in paths if p in PATHS}
    ort_paths = [p for p in paths if p in ORT_PATHS]
    n_tasks = len(info.tasks)
    one_task = info.tasks.index(Task.TEXT_MATCHING) if ort_paths else None
    g = torch.Generator().manual_seed(0)
    vocab = min(info.raw_config.get("vocab_size", 8000), 8000)

    def seq(n: int) -> list[int]:
        return [0, *torch.randint(5, vocab, (n - 2,), generator=g).tolist(), 2]

    lengths = _MIXED[:mixed]
    workloads = {
        f"padded {batch}x128": ([seq(128) for _ in range(batch)], False),
        f"packed mixed ({len(lengths)} seqs, {sum(lengths)} tokens)": ([seq(n) for n in lengths], True),
    }
    adapters = {w: [i % n_tasks if one_task is None else one_task for i in range(len(s))]
                for w, (s, _) in workloads.items()}
    runs: dict[tuple[str, str], Callable[[], torch.Tensor]] = {
        (p, w): (lambda e=e, s=s, a=adapters[w], k=k: e.pooled_batch(s, a, packed=k))
        for p, e in encoders.items() for w, (s, k) in workloads.items()}
    if ort_paths:
        from engine_hf.tools.onnx_export import ONNX_FILE, ort_session, pooled, quantize_int8

        if onnx is None:
            raise ValueError(f"paths {ort_paths} need an ONNX export of this checkpoint (--onnx DIR)")
        for p in ort_paths:
            session = ort_session(onnx, threads, quantize_int8(onnx).name if ORT_PATHS[p] else ONNX_FILE)
            for w, (s, _) in workloads.items():
                runs[(p, w)] = lambda session=session, s=s: torch.from_numpy(pooled(session, s, one_task))
    print(f"{cpu.summary()}: {len(runs)} runs loaded", file=sys.stderr, flush=True)
    vectors = {key: fn() for key, fn in runs.items()}  # warm-up, and the fidelity sample
    times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    cpu_times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    loads = []
    for r in range(repeats):
        for key, fn in runs.items():
            wall, cpu_s = _timed(fn)
            times[key].append(wall)
            cpu_times[key].append(cpu_s)
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1}/{repeats}: load {loads[-1]:.1f}", file=sys.stderr, flush=True)
    base = "torch-fp32" if "torch-fp32" in paths else paths[0]
    table: dict[str, dict[str, Any]] = {}
    for w, (seqs, _) in workloads.items():
        n_tokens = sum(len(s) for s in seqs)
        ref = vectors[(base, w)]
        for p in paths:
            tps = n_tokens / statistics.median(times[(p, w)])
            got = vectors[(p, w)]
            cos = torch.nn.functional.cosine_similarity(got.double(), ref.double(), dim=1)
            cos32 = torch.nn.functional.cosine_similarity(got[:, :32].double(), ref[:, :32].double(), dim=1)
            table.setdefault(p, {})[w] = {
                "tokens_per_second": round(tps, 1),
                "tokens_per_cpu_second": round(n_tokens / statistics.median(cpu_times[(p, w)]), 1),
                "min_cosine_vs_fp32": round(float(cos.min()), 6),
                "min_cosine_32_vs_fp32": round(float(cos32.min()), 6),
            }
    for w in workloads:
        ref_tps = table[base][w]["tokens_per_second"]
        ref_cpu = table[base][w]["tokens_per_cpu_second"]
        for p in paths:
            table[p][w]["vs_" + base] = round(table[p][w]["tokens_per_second"] / ref_tps, 2)
            table[p][w]["cpu_time_vs_" + base] = round(table[p][w]["tokens_per_cpu_second"] / ref_cpu, 2)
    out: dict[str, Any] = {
        "cpu": cpu.summary(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "allocator_keeps_freed_memory": allocator,
        "tasks": "mixed (five, by row)" if one_task is None else "text-matching (one per batch, for ONNX Runtime)",
        "repeats": repeats,
        "load_average": {"min": min(loads), "median": statistics.median(loads), "max": max(loads)},
        "paths": table,
    }
    if with_gemm:
        out["gemm_gflops_2048_rows"] = {"cpu": cpu.summary(), **gemm()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine_hf.tools.cpu_paths", description=__doc__)
    parser.add_argument("--model", help="checkpoint directory (make-checkpoint --size full)")
    parser.add_argument("--paths", help=f"comma-separated of {', '.join([*PATHS, *ORT_PATHS])} "
                        "(default: all; the ort ones with --onnx)")
    parser.add_argument("--onnx", type=Path,
                        help="an ONNX export of the same checkpoint (python -m engine_hf.tools.onnx_export)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gemm", action="store_true", help="also time each linear shape alone")
    parser.add_argument("--gemm-only", action="store_true", help="only time each linear shape alone (no model)")
    parser.add_argument("--batch", type=int, default=16, help="rows of the padded workload (x 128 tokens)")
    parser.add_argument("--mixed", type=int, default=len(_MIXED),
                        help=f"sequences of the packed workload (the first N of {list(_MIXED)})")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc as it is (the engine keeps freed memory; see docs/engines.md)")
    args = parser.parse_args(argv)
    if args.gemm_only:
        torch.set_num_threads(args.threads)
        keep_freed_memory()
        print(json.dumps({"cpu": detect_cpu().summary(), "threads": args.threads, "load_average": os.getloadavg()[0],
                          "mkl_enable_instructions": os.environ.get("MKL_ENABLE_INSTRUCTIONS"),
                          "gemm_gflops_2048_rows": gemm()}, indent=2))
        return 0
    if not args.model:
        parser.error("--model is required (unless --gemm-only)")
    paths = args.paths.split(",") if args.paths else [*PATHS, *(ORT_PATHS if args.onnx else ())]
    unknown = [p for p in paths if p not in PATHS and p not in ORT_PATHS]
    if unknown:
        parser.error(f"unknown paths {unknown}; known: {', '.join([*PATHS, *ORT_PATHS])}")
    if args.onnx is None and any(p in ORT_PATHS for p in paths):
        parser.error("the ort paths need --onnx DIR (an export of this checkpoint)")
    print(json.dumps(measure(args.model, paths=paths, threads=args.threads, repeats=args.repeats,
                             with_gemm=args.gemm, keep_memory=not args.default_malloc, batch=args.batch,
                             mixed=args.mixed, onnx=args.onnx), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

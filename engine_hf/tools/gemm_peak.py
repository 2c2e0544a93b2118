"""The machine's measured GEMM peak: the absolute upper bound on any forward path's speed.

A transformer encoder's time is mostly its linear layers, i.e. GEMMs. Timing one large GEMM of
the model's own shape (``[M, 1024] x [1024, 4096]``) through each library a forward path can use
gives the FLOP rate this CPU reaches at best; divided by the model's FLOPs per token (see
``gateway.bench.hardware.flops_per_token``) it is the tokens/s no implementation can beat. Paths:

* ``fp32-mkl``     — ``torch.nn.functional.linear`` (MKL sgemm: torch eager's fp32 Linear)
* ``fp32-onednn``  — ``torch.ops.mkldnn._linear_pointwise`` with the weight prepacked for oneDNN
  (what inductor's freezing emits for a CPU Linear)
* ``fp32-ort``     — an ONNX Runtime ``MatMul`` with the weight as an initializer (ORT's MLAS)
* ``bf16-onednn``  — the same oneDNN linear in bf16, only where the CPU has native bf16
  (AVX512_BF16 or AMX: elsewhere it is emulated and says nothing about the hardware)

Run as ``python -m engine_hf.tools.gemm_peak [--threads N] [--m M]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import torch

from engine_hf.cpu_kernels import detect_cpu, make_kernel

__all__ = ["PATHS", "gemm_peak"]

#: the GEMM paths in the order they are timed
PATHS = ("fp32-mkl", "fp32-onednn", "fp32-ort", "bf16-onednn")


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(mean, best) seconds of ``fn`` over ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sum(times) / len(times), min(times)


def _ort_matmul(x: torch.Tensor, w: torch.Tensor, threads: int | None) -> Callable[[], object]:
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    m, k = x.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, w.shape[0]])],
        [numpy_helper.from_array(w.T.contiguous().numpy(), "w")],
    )
    # IR 10: what ONNX Runtime 1.17+ reads (onnx's newest IR can be ahead of the runtime)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    feed = {"x": np.ascontiguousarray(x.numpy())}
    return lambda: session.run(["y"], feed)


def gemm_peak(m: int = 2048, k: int = 1024, n: int = 4096, *, repeats: int = 5,
              threads: int | None = None) -> dict[str, Any]:
    """GFLOP/s (mean and best over ``repeats``) of an ``[m, k] x [k, n]`` GEMM on each path this
    machine has; a path that cannot run is reported with its ``error``."""
    if threads:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.zeros(n)
    flops = 2.0 * m * k * n
    runs: dict[str, Callable[[], Callable[[], object]]] = {
        "fp32-mkl": lambda: _bound(make_kernel("torch", w, b), x),
        "fp32-onednn": lambda: _bound(make_kernel("onednn", w, b), x),
        "fp32-ort": lambda: _ort_matmul(x, w, threads),
    }
    if detect_cpu().native_bf16:
        xb, wb, bb = x.bfloat16(), w.bfloat16(), b.bfloat16()
        runs["bf16-onednn"] = lambda: _bound(make_kernel("onednn", wb, bb), xb)
    out: dict[str, Any] = {}
    with torch.inference_mode():
        for name, make in runs.items():
            try:
                mean, best = _time(make(), repeats)
            except Exception as exc:  # a library without this path: say so, time the others
                out[name] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            out[name] = {"gflops": round(flops / mean / 1e9, 1), "best_gflops": round(flops / best / 1e9, 1)}
    return {"shape": [m, k, n], "threads": torch.get_num_threads(), "repeats": repeats, "paths": out}


def _bound(kernel: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], object]:
    """One GEMM on the engine's own linear kernel (:func:`engine_hf.cpu_kernels.make_kernel`: the
    peak is that of what the engine runs, weights packed as it packs them)."""
    return lambda: kernel(x)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m engine_hf.tools.gemm_peak", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int)
    p.add_argument("--m", type=int, default=2048, help="rows (tokens) of the GEMM")
    p.add_argument("--k", type=int, default=1024)
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(json.dumps(gemm_peak(args.m, args.k, args.n, repeats=args.repeats, threads=args.threads)))


if __name__ == "__main__":
    main()

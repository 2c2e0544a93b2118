"""What machine a bench ran on, and the model's arithmetic: the numbers the ceiling is read against.

A CPU's speed on this model depends on which instructions it has (AVX2 only, AVX-512, native
bf16 via AVX512_BF16 or AMX, int8 via VNNI/AMX), so a result names them; and the model's FLOPs per
token turn a measured GEMM peak (``engine_hf.tools.gemm_peak``) into tokens/s no forward path can
beat. No torch here: the report reads a stored run with this module alone.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["SIMD_FLAGS", "cpu_info", "flops_per_token", "gemm_bound", "versions"]

#: the CPU flags that decide which kernels a forward path can use (the report prints these)
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
              "amx_tile", "amx_bf16", "amx_int8")


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """Model name, vendor, logical CPUs and the flags of the first CPU, as the engine detects them
    (:func:`engine_hf.cpu_kernels.detect_cpu`: the same flags its kernel choice reads)."""
    from engine_hf.cpu_kernels import detect_cpu

    cpu = detect_cpu(cpuinfo)
    return {"model": cpu.name, "vendor": cpu.vendor, "cpus": os.cpu_count(), "flags": sorted(cpu.flags),
            "simd": [f for f in SIMD_FLAGS if f in cpu.flags]}


def versions(packages: Iterable[str] = ("torch", "onnxruntime", "transformers", "embed-gateway")) -> dict[str, str]:
    """Installed versions of the packages whose kernels or code the figures depend on."""
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def flops_per_token(config: Mapping[str, Any], length: int) -> float:
    """Forward FLOPs per token of a sequence of ``length`` tokens: the linear layers
    (``2 x (4 d^2 + 2 d f)`` per layer: Q, K, V, output, MLP up and down) plus attention's two
    ``length``-long products (``2 x 2 x length x d`` per layer). Embeddings, norms, softmax and the
    rank-4 adapters are below 1 % and left out."""
    d, f, layers = int(config["hidden_size"]), int(config["intermediate_size"]), int(config["num_hidden_layers"])
    return float(layers * (2 * (4 * d * d + 2 * d * f) + 4 * length * d))


def gemm_bound(config: Mapping[str, Any], lengths: Iterable[int], gflops: float) -> float:
    """Tokens/s of a workload's sequences if every FLOP ran at ``gflops``: the hardware's limit."""
    ls = list(lengths)
    flops = sum(n * flops_per_token(config, n) for n in ls)
    return sum(ls) * gflops * 1e9 / flops

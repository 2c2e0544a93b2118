"""Pick the device, dtype and CPU kernels: ``auto`` = CUDA in bf16 (fp16 where bf16 is not native)
when a GPU is present, else CPU in exact fp32 (on oneDNN kernels where the CPU gains from them).

bf16 on CPU and int8 are opt-in: ``dtype: auto`` never trades the exact fp32 vectors for speed on a
CPU, even where bf16 is native and faster (docs/engines.md, "CPU paths", has the figures)."""

from __future__ import annotations

import torch

from engine_hf.cpu_kernels import CpuFeatures, KernelName, choose_kernels

__all__ = [
    "default_max_batch_tokens",
    "numerics",
    "resolve_device",
    "resolve_dtype",
    "resolve_precision",
    "use_packed",
]

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"engines.hf.device is {name!r} but CUDA is not available to torch")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The model's torch dtype (``int8``: the float32 model its quantised linears run in)."""
    if name == "int8":
        if device.type != "cpu":
            raise ValueError("dtype int8 runs on a CPU only; on a GPU use bfloat16 or float16")
        return torch.float32
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use auto, float32, float16, bfloat16 or int8") from None


def resolve_precision(
    dtype: str, cpu_kernels: str, device: torch.device, cpu: CpuFeatures, *, compiled: bool = False
) -> tuple[torch.dtype, KernelName]:
    """``engines.hf.dtype`` and ``engines.hf.cpu_kernels`` resolved: the model dtype and what runs
    its linear layers. GPUs and compiled models always run torch's kernels."""
    dt = resolve_dtype(dtype, device)
    if dtype == "int8":
        if compiled:
            raise ValueError("dtype int8 cannot be compiled; set compile: off")
        if "onednn" not in torch.backends.quantized.supported_engines:
            raise ValueError("dtype int8 needs torch's oneDNN quantised kernels, which this torch build lacks "
                             "(x86 wheels have them); use float32 or bfloat16")
        return dt, "int8"
    if device.type != "cpu" or compiled or dt == torch.float16:
        return dt, "torch"
    return dt, choose_kernels(cpu_kernels, cpu, dt)


def numerics(dtype: torch.dtype, kernels: KernelName) -> str:
    """The engine's numeric identity, shown in /info: ``fp32-exact``, ``bf16``, ``fp16`` or ``int8``."""
    if kernels == "int8":
        return "int8"
    return {torch.float32: "fp32-exact", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def default_max_batch_tokens(device_type: str) -> int:
    """``engines.hf.max_batch_tokens`` when it is not set: what keeps each device fastest per token.

    A CPU is fastest per token on passes of ~1-2k tokens: bigger passes spill the activations out
    of its caches (full size, fp32, 2 cores: 1024 tokens ~210 tok/s, 4096 ~190, 16384 ~184; see
    docs/benchmarks.md). A GPU needs big passes to fill its SMs."""
    return 16384 if device_type == "cuda" else 1024


def use_packed(attention: str, device: torch.device) -> bool:
    """``engines.hf.attention`` resolved: packed (no padding) on CPU, where compute is per real
    token; padded SDPA (one fused kernel per layer) on GPUs."""
    if attention not in ("auto", "packed", "padded"):
        raise ValueError(f"unknown attention {attention!r}; use auto, packed or padded")
    return attention == "packed" or (attention == "auto" and device.type == "cpu")

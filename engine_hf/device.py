"""Pick the device and dtype: ``auto`` = CUDA in bf16 (fp16 where bf16 is not native) when a GPU is
present, else CPU in fp32 (CPUs without native bf16 run bf16 several times slower than fp32)."""

from __future__ import annotations

import torch

__all__ = ["default_max_batch_tokens", "resolve_device", "resolve_dtype", "use_packed"]

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
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use auto, float32, float16 or bfloat16") from None


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

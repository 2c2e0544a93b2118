"""CPU linear kernels: what runs the base ``W x + b`` of every linear layer on a CPU.

Most of the encoder's FLOPs are its linear layers. torch's ``F.linear`` in fp32 goes to MKL's
sgemm, which on non-Intel CPUs takes its AVX2 path even where the CPU has AVX-512; oneDNN (shipped
in every x86 torch wheel, the library torch's own inductor packs linear weights for) uses the
CPU's widest ISA everywhere, and a weight reordered once into its blocked layout saves a re-layout
per call. Three kernels, all behind one call signature ``kernel(x) -> y``:

* ``torch``  — ``F.linear`` on the plain weight (what the engine always ran);
* ``onednn`` — ``torch.ops.mkldnn._linear_pointwise`` on a weight prepacked once by
  ``torch.ops.mkldnn._reorder_linear_weight`` (inductor's freezing pass does the same). fp32 stays
  IEEE fp32 (no implicit down-conversion), so the exact engine stays exact; bf16 uses AMX where the
  CPU has it;
* ``int8``   — weights quantised per output channel (symmetric int8, packed for oneDNN by
  ``quantized.linear_prepack``), activations quantised per tensor on every call by oneDNN itself
  (asymmetric uint8, as ONNX Runtime's dynamic quantisation does), the int8 GEMM on VNNI/AMX with
  an fp32 output (``quantized.linear_dynamic``). Lossy: opt-in only, measured by
  ``embed-gateway verify --dtype int8``. The activation scale is the whole pass's, so an int8
  vector moves slightly with its batch-mates (within what ``verify`` reports).

Which kernel ``auto`` picks follows the CPU's vendor and features (:func:`choose_kernels`),
detected once by :func:`detect_cpu` and injectable for tests.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "CpuFeatures",
    "KernelLinear",
    "KernelName",
    "LinearKernel",
    "choose_kernels",
    "detect_cpu",
    "keep_freed_memory",
    "make_kernel",
]

log = logging.getLogger(__name__)

KernelName = Literal["torch", "onednn", "int8"]
#: ``kernel(x) -> y``: the base linear of one layer (bias included)
LinearKernel = Callable[[torch.Tensor], torch.Tensor]

#: rows the packed weights' blocked layout is tuned for (a typical pass: ~1k tokens)
_PACK_ROWS = 1024


@dataclass(frozen=True, slots=True)
class CpuFeatures:
    """The CPU's model name and the instruction-set flags the kernel choice depends on."""

    name: str
    flags: frozenset[str]
    #: ``vendor_id`` of /proc/cpuinfo: GenuineIntel, AuthenticAMD, ... ("" where unknown)
    vendor: str = ""

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def native_bf16(self) -> bool:
        """bf16 dot products in hardware (AVX512_BF16 or AMX-BF16); without them bf16 is emulated."""
        return bool({"avx512_bf16", "amx_bf16"} & self.flags)

    @property
    def native_int8(self) -> bool:
        """int8 dot products in hardware (VNNI or AMX-INT8)."""
        return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & self.flags)

    def summary(self) -> str:
        """The model name and the flags that matter here, for logs and reports."""
        shown = sorted(f for f in self.flags if f.startswith(("avx", "amx", "fma")))
        return f"{self.name} ({self.vendor or 'unknown vendor'}) [{' '.join(shown)}]"


def detect_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuFeatures:
    """This machine's CPU: model name and flags from ``/proc/cpuinfo`` (Linux), else torch's probe."""
    name, vendor, flags = "unknown CPU", "", set()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "vendor_id" and not vendor:
                vendor = value.strip()
            elif key == "model name" and name == "unknown CPU":
                name = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    if not flags:  # no /proc/cpuinfo (another OS): torch's own probe, in Linux's spelling
        caps = torch.cpu.get_capabilities()
        flags = {_LINUX_NAMES.get(k, k) for k, present in caps.items() if present is True}
        name = str(caps.get("cpu_name", name))
    return CpuFeatures(name, frozenset(flags), vendor)


#: torch's capability names that Linux spells otherwise
_LINUX_NAMES = {"avx512_f": "avx512f", "avx512_bw": "avx512bw", "avx512_cd": "avx512cd", "avx512_dq": "avx512dq",
                "avx512_vl": "avx512vl", "avx512_ifma": "avx512ifma", "avx512_vbmi": "avx512vbmi", "fma3": "fma"}


def choose_kernels(setting: str, features: CpuFeatures, dtype: torch.dtype) -> KernelName:
    """``engines.hf.cpu_kernels`` resolved for a CPU engine in ``dtype`` (int8 is chosen by dtype,
    not here).

    ``auto``: oneDNN for fp32 on AVX-512 CPUs not made by Intel (MKL's sgemm runs its AVX2 code
    there: about half oneDNN's speed); torch's kernels everywhere else: on Intel's AVX-512 CPUs MKL
    runs AVX-512 and the whole model measured no faster on oneDNN, on AVX2-only CPUs both run the
    same AVX2 code, and torch's bf16 ``F.linear`` already goes to oneDNN (AMX) unpacked. The figures
    are in docs/engines.md ("CPU paths").
    """
    if setting not in ("auto", "onednn", "torch"):
        raise ValueError(f"unknown cpu_kernels {setting!r}; use auto, onednn or torch")
    if setting != "auto":
        if setting == "onednn" and not torch.backends.mkldnn.is_available():
            raise ValueError("cpu_kernels is 'onednn' but this torch build has no oneDNN (mkldnn)")
        return setting  # type: ignore[return-value]
    if not torch.backends.mkldnn.is_available():
        return "torch"
    if dtype == torch.float32 and features.avx512 and features.vendor != "GenuineIntel":
        return "onednn"
    return "torch"


def make_kernel(name: KernelName, weight: torch.Tensor, bias: torch.Tensor | None) -> LinearKernel:
    """The base linear of one layer on kernel ``name`` (weights packed once, here)."""
    if name == "torch":
        return functools.partial(F.linear, weight=weight, bias=bias)
    if name == "onednn":
        return _OneDnnLinear(weight, bias)
    if name == "int8":
        return _Int8Linear(weight, bias)
    raise ValueError(f"unknown kernel {name!r}")


class _OneDnnLinear:
    """``x @ W^T + b`` on a oneDNN-prepacked weight (same dtype as ``W``)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        with torch.no_grad():
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), _PACK_ROWS)
        self.bias = None if bias is None else bias.detach()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return y


class _Int8Linear:
    """Dynamic int8: per-channel symmetric int8 weights, per-tensor asymmetric uint8 activations.

    One call of ``quantized.linear_dynamic`` on a weight packed for oneDNN: oneDNN quantises the
    activations itself (range, scale and rounding in C++, one pass) and runs the int8 GEMM (VNNI or
    AMX) with an fp32 output. An earlier version quantised the activations in torch (six passes over
    ``x``) and called ``onednn.qlinear_pointwise``: the same scheme; this call is 12-68 % faster per
    GEMM on an AMX machine (docs/engines.md, "CPU paths")."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        with torch.no_grad():
            w = weight.detach().to(torch.float32)
            scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12).to(torch.float64)
            zero = torch.zeros(w.shape[0], dtype=torch.long)
            previous = torch.backends.quantized.engine
            torch.backends.quantized.engine = "onednn"  # the packed weight's class decides the kernel
            try:
                with warnings.catch_warnings():
                    # torch 2.13 deprecates the quantised tensor types; the prepack still takes them
                    warnings.simplefilter("ignore", UserWarning)
                    q = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
                self.packed = torch.ops.quantized.linear_prepack(
                    q, None if bias is None else bias.detach().to(torch.float32)
                )
            finally:
                torch.backends.quantized.engine = previous
        self.fan_in = w.shape[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y: torch.Tensor = torch.ops.quantized.linear_dynamic(
            x.reshape(-1, self.fan_in).to(torch.float32), self.packed, False
        )
        return y.reshape(*lead, y.shape[-1]).to(x.dtype)


@functools.cache
def keep_freed_memory() -> bool:
    """Stop glibc's malloc from handing large freed blocks back to the OS (and faulting them in
    again on the next forward pass: every activation of a pass is a fresh multi-MiB block, and on a
    VM each page fault is costly). Process-wide, once; False where the C library is not glibc."""
    path = ctypes.util.find_library("c")
    if path is None:
        return False
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    # 32 MiB is the largest mmap threshold glibc takes on 64-bit (a 1024-token pass's biggest
    # activation is 16 MiB in fp32); freed memory up to 1 GiB stays with the process
    ok = bool(mallopt(m_mmap_threshold, 32 << 20))
    return bool(mallopt(m_trim_threshold, 1 << 30)) and ok


class KernelLinear(torch.nn.Module):
    """A plain ``nn.Linear`` (one no adapter targets) on a CPU kernel."""

    def __init__(self, base: torch.nn.Linear, name: KernelName) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self._kernel = make_kernel(name, base.weight, base.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._kernel(x)

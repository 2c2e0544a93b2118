"""``embed-gateway verify``: the engine's vectors on a device, dtype, CPU kernels and attention mode
against the fp32 CPU engine (torch's kernels), for every task.

``--dtype int8`` (CPU) measures the quantisation error of the int8 engine on YOUR checkpoint: random
weights do not show it, so run this on the weights you serve before serving int8 (docs/engines.md).

The fp32 CPU forward pass is the one the test suite proves equal to an independent fp32 reference
(``tests/support/reference.py``) for every task; this command carries that proof to other hardware
(a GPU in bf16/fp16, padded SDPA or packed varlen attention). The reference side embeds each text
alone (no padding, no packing); the checked side embeds all of them — every task, every length —
in ONE batch, as the server batches them, so padding masks and per-row adapters are exercised. It
reports the lowest cosine per task, over the full vectors and over their first ``dims`` dimensions
(the smallest Matryoshka size, where rounding errors weigh most), and fails below ``threshold``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch

from engine_hf.cpu_kernels import detect_cpu
from engine_hf.device import numerics, resolve_device, resolve_precision
from engine_hf.model import JinaEncoder
from engine_hf.tools.baselines import load_encoder
from gateway.contract import Task

__all__ = ["SAMPLES", "main_json", "verify"]

#: short facts to a long passage, several scripts: every padding ratio a real batch sees
SAMPLES = (
    "The user prefers dark mode.",
    "Người dùng thích cà phê sữa đá vào buổi sáng.",
    "用户每天早上喝咖啡，晚上读书。",
    "Der Benutzer arbeitet in Berlin an einem Projekt für semantische Suche und mag Jazz.",
    " ".join(["Retrieval-augmented generation stores passages as vectors and finds them by meaning."] * 12),
    " ".join(["Пользователь любит кофе и прогулки в парке с собакой по выходным."] * 40),
)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


def verify(
    model: str,
    *,
    device: str = "auto",
    dtype: str = "auto",
    cpu_kernels: str = "auto",
    attention: Sequence[str] = ("padded", "packed"),
    threshold: float = 0.999,
    dims: int = 32,
    texts: Sequence[str] = SAMPLES,
) -> dict[str, Any]:
    reference, text = load_encoder(model, "cpu", "float32")
    info = reference.info
    dev = resolve_device(device)
    cpu = detect_cpu()
    dt, kernels = resolve_precision(dtype, cpu_kernels, dev, cpu)
    checked = JinaEncoder(info, device=dev, dtype=dt, kernels=kernels)
    tasks: list[Task | None] = [*info.tasks, None]
    seqs: list[list[int]] = []
    adapters: list[int] = []
    labels: list[str] = []
    for task in tasks:
        for enc in text.encode(list(texts), task, truncate=True):
            seqs.append(enc.ids)
            adapters.append(-1 if task is None else reference.task_index[task])
            labels.append("none" if task is None else task.value)
    expected = [reference.pooled_batch([ids], [a], packed=False)[0] for ids, a in zip(seqs, adapters, strict=True)]
    lengths = [len(ids) for ids in seqs]
    out: dict[str, Any] = {
        "model": model, "device": str(dev), "dtype": str(dt).removeprefix("torch."),
        "numerics": numerics(dt, kernels), "cpu_kernels": kernels if dev.type == "cpu" else None,
        "cpu": cpu.summary() if dev.type == "cpu" else None, "threshold": threshold,
        "dims": dims, "inputs": len(seqs), "tokens": {"min": min(lengths), "max": max(lengths)}, "modes": {},
    }
    ok = True
    for mode in attention:
        got = checked.pooled_batch(seqs, adapters, packed=mode == "packed").float().cpu()
        per_task: dict[str, dict[str, float]] = {}
        for label, g, e in zip(labels, got, expected, strict=True):
            row = per_task.setdefault(label, {"min_cosine": 1.0, f"min_cosine_{dims}": 1.0})
            row["min_cosine"] = min(row["min_cosine"], _cosine(g, e))
            row[f"min_cosine_{dims}"] = min(row[f"min_cosine_{dims}"], _cosine(g[:dims], e[:dims]))
        worst = min(min(r.values()) for r in per_task.values())
        passed = worst >= threshold
        ok = ok and passed
        out["modes"][mode] = {"min_cosine": round(worst, 6), "passed": passed,
                              "per_task": {t: {k: round(v, 6) for k, v in r.items()} for t, r in per_task.items()}}
    out["passed"] = ok
    return out


def main_json(**kwargs: Any) -> tuple[str, bool]:
    result = verify(**kwargs)
    return json.dumps(result, indent=2), bool(result["passed"])

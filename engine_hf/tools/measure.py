"""Measure one adapter strategy at full size: resident memory and forward tokens/s.

``embed-gateway measure --model DIR --adapter-mode rowwise|merged`` loads the encoder (no HTTP,
no batching policy) and times forward passes on uniform batches of random token ids: a
single-task batch, a mixed-task batch (rows cycling through the five tasks) and a no-task batch.
Run each strategy in its own process so peak memory is its own.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from engine_hf.checkpoint import describe_checkpoint, resolve_model_dir
from engine_hf.device import resolve_device, resolve_dtype
from engine_hf.model import JinaEncoder

__all__ = ["measure", "rss_mib"]


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB (Linux /proc)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(
    model: str,
    *,
    adapter_mode: str = "rowwise",
    device: str = "auto",
    dtype: str = "auto",
    threads: int | None = None,
    seq_len: int = 128,
    batch: int = 8,
    repeats: int = 5,
) -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
    rss0, _ = rss_mib()
    info = describe_checkpoint(resolve_model_dir(model))
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    t0 = time.perf_counter()
    enc = JinaEncoder(info, device=dev, dtype=dt, merged_adapters=adapter_mode == "merged")
    load_s = time.perf_counter() - t0
    rss1, peak_load = rss_mib()

    def nbytes(tensors: Any) -> int:
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
        return sum(storages.values())

    base_bytes = nbytes(enc.model.parameters())
    lora_bytes = nbytes(
        b for m in enc.model.modules() if hasattr(m, "selection") for b in m.buffers(recurse=False)
    )
    merged_bytes = nbytes(t for m in enc.model.modules() for t in (getattr(m, "merged", None) or []))

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, min(enc.config.vocab_size, 8000), (batch, seq_len), generator=g).to(dev)
    ids[:, 0], ids[:, -1] = 0, 2
    mask = torch.ones_like(ids)
    n_tasks = len(info.tasks)
    cases = {
        "single_task": torch.full((batch,), n_tasks - 1),
        "mixed_tasks": torch.arange(batch) % n_tasks,
        "no_task": torch.full((batch,), -1),
    }
    runs = {case: (lambda rows=rows.to(dev): enc.pooled(ids, mask, rows)) for case, rows in cases.items()}
    for fn in runs.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {case: [] for case in runs}
    for _ in range(repeats):  # interleaved rounds, so drift on a shared machine hits every case alike
        for case, fn in runs.items():
            times[case].append(_timed(fn))
    results = {}
    for case, ts in times.items():
        best, median = min(ts), statistics.median(ts)
        results[case] = {
            "best_seconds": round(best, 4),
            "median_seconds": round(median, 4),
            "tokens_per_second_best": round(batch * seq_len / best, 1),
            "tokens_per_second_median": round(batch * seq_len / median, 1),
        }
    _, peak = rss_mib()
    out: dict[str, Any] = {
        "model": model,
        "layout": info.layout,
        "adapter_mode": adapter_mode,
        "device": str(dev),
        "dtype": str(dt).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "batch": batch,
        "seq_len": seq_len,
        "load_seconds": round(load_s, 1),
        "weights_mib": round(base_bytes / 2**20, 1),
        "lora_mib": round(lora_bytes / 2**20, 1),
        "merged_copies_mib": round(merged_bytes / 2**20, 1),
        "rss_after_load_mib": round(rss1 - rss0, 1),
        "peak_rss_mib": round(peak, 1),
        "forward": results,
    }
    if dev.type == "cuda":
        out["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def main_json(**kwargs: Any) -> str:
    return json.dumps(measure(**kwargs), indent=2)

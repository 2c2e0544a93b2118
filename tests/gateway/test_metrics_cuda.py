"""GPU memory in /metrics: read from torch's allocator at scrape time, absent without CUDA.

No GPU here: the CPU case runs as it is; the GPU case stands torch.cuda's counters in for a
device (a fault-free fake of the few calls the collector makes), to check the exposition."""

from __future__ import annotations

import pytest
import torch
from prometheus_client import CollectorRegistry, generate_latest

from gateway.obs.metrics import CudaMemoryCollector


def scrape() -> tuple[CollectorRegistry, str]:
    registry = CollectorRegistry()
    registry.register(CudaMemoryCollector())
    return registry, generate_latest(registry).decode()


def test_no_gpu_memory_series_without_cuda() -> None:
    assert not torch.cuda.is_available()  # this machine (and CI) has no GPU
    _, text = scrape()
    assert "embed_gateway_cuda_memory_bytes" not in text


def test_gpu_memory_series_per_device_and_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda i: 100 + i)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: 200 + i)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda i: 300 + i)
    registry, _ = scrape()
    got = {(d, k): registry.get_sample_value("embed_gateway_cuda_memory_bytes", {"device": d, "kind": k})
           for d in ("cuda:0", "cuda:1") for k in ("allocated", "reserved", "peak_allocated")}
    assert got == {("cuda:0", "allocated"): 100, ("cuda:0", "reserved"): 200, ("cuda:0", "peak_allocated"): 300,
                   ("cuda:1", "allocated"): 101, ("cuda:1", "reserved"): 201, ("cuda:1", "peak_allocated"): 301}

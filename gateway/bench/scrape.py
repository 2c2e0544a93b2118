"""Numbers from a server's Prometheus ``/metrics`` text (the gateway's own, or vLLM's).

One reader on prometheus-client's parser, so the bench and ``measure-overhead`` do not each parse
the exposition format by hand.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["forward_seconds", "gpu_peak_mib", "sample_values"]


def sample_values(metrics_text: str, sample: str, **labels: str) -> list[float]:
    """Values of every sample named ``sample`` (e.g. ``process_cpu_seconds_total``, or a histogram's
    ``…_sum``) whose labels include ``labels``."""
    return [
        s.value
        for family in text_string_to_metric_families(metrics_text)
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def gpu_peak_mib(metrics_text: str) -> float | None:
    """Most GPU memory the server's tensors took at once (its /metrics), MiB; None without CUDA."""
    peaks = sample_values(metrics_text, "embed_gateway_cuda_memory_bytes", kind="peak_allocated")
    return round(max(peaks) / 2**20, 1) if peaks else None


def forward_seconds(metrics_text: str, engine: str = "hf") -> float:
    """Seconds the engine's worker has spent in forward passes so far (its /metrics)."""
    return sum(sample_values(metrics_text, "embed_gateway_batch_duration_seconds_sum", engine=engine))

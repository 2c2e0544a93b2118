"""Every Prometheus metric of the gateway, declared in this one module.

Metrics are recorded where the decisions happen (the service's fallback loop, the monitor's
breaker and parity decisions). Each app owns a :class:`GatewayMetrics` with its own registry, so
several apps in one process (tests) never collide and a test reads exactly its app's counts;
``/metrics`` (a later issue) exposes ``registry``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["GatewayMetrics"]


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.fallbacks = Counter(
            "embed_gateway_fallbacks_total",
            "Requests moved to the next engine of their route after a retryable failure.",
            ["task", "engine", "reason"],
            registry=self.registry,
        )
        self.retries = Counter(
            "embed_gateway_retries_total",
            "Retries of the last engine a request could go to (the retry policy).",
            ["task", "engine", "reason"],
            registry=self.registry,
        )
        self.circuit_opened = Counter(
            "embed_gateway_circuit_opened_total",
            "Times an engine's circuit breaker took it out of its routes.",
            ["engine"],
            registry=self.registry,
        )
        self.parity_failures = Counter(
            "embed_gateway_parity_failures_total",
            "Parity checks an engine failed (vectors differ from the reference engine's).",
            ["engine", "task"],
            registry=self.registry,
        )
        self.parity_cosine = Gauge(
            "embed_gateway_parity_mean_cosine",
            "Mean cosine between an engine's and the reference engine's probe vectors at the last check.",
            ["engine", "task"],
            registry=self.registry,
        )

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when absent); for tests and the admin view."""
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got

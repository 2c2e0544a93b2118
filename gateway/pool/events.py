"""What the pool reports as it decides: the collector the app registers (its metrics).

Why a protocol: the pool decides when an engine leaves its routes and what a parity check found,
but must not import the metrics module (the metrics read the pool's readiness; arrows point one
way). The app passes its :class:`gateway.obs.metrics.GatewayMetrics`, which implements this.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NULL_EVENTS", "PoolEvents"]


class PoolEvents(Protocol):
    def engine_out(self, engine: str) -> None:
        """Engine ``engine`` was taken out of its routes (its circuit opened)."""

    def parity_checked(self, engine: str, task: str, *, mean_cosine: float, ok: bool) -> None:
        """A parity check of ``engine`` on route key ``task`` found ``mean_cosine``; ``ok``: it passed."""


class _NullEvents:
    def engine_out(self, engine: str) -> None:
        pass

    def parity_checked(self, engine: str, task: str, *, mean_cosine: float, ok: bool) -> None:
        pass


#: the collector of a pool nobody watches (tools)
NULL_EVENTS: PoolEvents = _NullEvents()

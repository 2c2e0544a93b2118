"""The "ready" rule, written once: for one engine, and for the gateway as a whole.

``GET /ready``, the admin view and the ``embed_gateway_engine_ready`` gauge all ask these pure
functions, so a probe and a dashboard can never disagree about what ready means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Readiness", "engine_ready", "gateway_readiness"]


def engine_ready(*, started: bool, healthy: bool | None, held_back: bool, circuit_open: bool) -> bool:
    """An engine is ready when it is in its routes: started, its last health check did not fail
    (``None``: not checked yet), the parity guard cleared it and its circuit is closed."""
    return started and healthy is not False and not held_back and not circuit_open


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    #: ``ready``, ``not ready`` or ``shutting down``
    status: str
    #: engines that are not ready, in the snapshot's order
    not_ready: tuple[str, ...]


def gateway_readiness(engines: Mapping[str, bool], *, draining: bool) -> Readiness:
    """The gateway is ready when it has engines, every one is ready, and it is not shutting down."""
    not_ready = tuple(n for n, ok in engines.items() if not ok)
    ready = bool(engines) and not not_ready and not draining
    status = "shutting down" if draining else "ready" if ready else "not ready"
    return Readiness(ready, status, not_ready)

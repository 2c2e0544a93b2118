"""The HF engine on Ray: Serve replicas for online traffic, an actor pool for bulk corpora.

:mod:`~engine_hf.ray.deployment` is the Serve deployment (an :class:`~engine_hf.HFEngine` per
replica, each batching by its own token budget); :mod:`~engine_hf.ray.engine` is the contract
``Engine`` the gateway calls, which reaches the replicas through a deployment handle and turns Ray's
failures into the contract's error tree. Ray is the optional ``[ray]`` extra and is imported only
when one of these is used (docs/scale-out.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["RayHFEngine"]

if TYPE_CHECKING:
    from engine_hf.ray.engine import RayHFEngine


def __getattr__(name: str) -> Any:
    if name == "RayHFEngine":
        from engine_hf.ray.engine import RayHFEngine

        return RayHFEngine
    raise AttributeError(name)

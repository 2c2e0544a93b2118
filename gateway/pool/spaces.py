"""Vector spaces: which vectors may be compared, stored together, cached together.

Two vectors are comparable only when the same weights (and prompts) made them for the same task, at
the same number of dimensions, normalised the same way, with the same numerics. The **space id** is a
short stable hash of exactly that. Engines the parity guard cleared against their model's reference
compute the reference's vectors, so they share its space; an engine without that guarantee (no
reference running, the guard off, a lossy int8 engine compared with nothing) has a space of its own.

Returned with every embedding (``x-embed-space``); a request can pin the space it expects
(``x-embed-expect-space``) and gets a 409 naming both instead of vectors of another space (after a
reload that changed the weights, a fallback to an engine outside parity). Stores stamp their
collections with it (docs/ab-testing.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from gateway.contract import EngineCapabilities, route_key

__all__ = ["Space", "space_of"]

#: bump when the rule below changes (every id changes with it)
_VERSION = "space-v1"


@dataclass(frozen=True, slots=True)
class Space:
    """A vector space and what it is made of (the id is a hash of the rest)."""

    id: str
    weights: str
    task: str
    dimensions: int
    normalized: bool
    numerics: str

    def describe(self) -> str:
        norm = "normalised" if self.normalized else "not normalised"
        return f"{self.id} (task {self.task}, {self.dimensions} dimensions, {norm}, {self.numerics})"


def space_of(
    basis: EngineCapabilities, engine: str, task: str | None, dimensions: int | None, normalized: bool
) -> Space:
    """The space of vectors computed like ``basis`` describes (the reference's capabilities for an
    engine the parity guard cleared, else the engine's own) for ``task``, truncated to
    ``dimensions`` (None = full width) and normalised or not."""
    weights = basis.weights or f"engine={engine}|{basis.identity or ''}"
    width = basis.dimensions if dimensions is None else min(dimensions, basis.dimensions)
    numerics = basis.numerics or "unknown"
    key = "|".join((_VERSION, weights, route_key(task), str(width), "n" if normalized else "u", numerics))
    return Space(_digest(key), weights, route_key(task), width, normalized, numerics)


@lru_cache(maxsize=4096)
def _digest(key: str) -> str:
    """The space id of ``key`` (every request names its space: its few keys are hashed once)."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]

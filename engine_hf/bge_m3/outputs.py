"""BGE-M3's lexical weights from per-token weights: pure numpy, no model.

Why a function of its own: the rule is the reference's (FlagEmbedding ``M3Embedder``'s
``_process_token_weights``) and is where outputs silently differ if it drifts: the special tokens
(cls, eos, pad, unk) are dropped, a token id that occurs several times keeps its **largest**
weight, and only weights above zero are kept.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import numpy.typing as npt

from gateway.contract import SparseVector

__all__ = ["lexical_weights"]


def lexical_weights(
    ids: npt.NDArray[np.int64], weights: npt.NDArray[np.float32], dropped: Collection[int]
) -> SparseVector:
    """One input's sparse vector: ``ids[i]`` carries ``weights[i]`` (``relu(sparse_linear(h_i))``);
    ids ascending and unique, weights > 0, float32."""
    ids = np.asarray(ids, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float32)
    keep = weights > 0
    if dropped:
        keep &= ~np.isin(ids, np.fromiter(dropped, dtype=np.int64))
    unique, inverse = np.unique(ids[keep], return_inverse=True)
    best = np.zeros(len(unique), dtype=np.float32)
    np.maximum.at(best, inverse, weights[keep])
    return SparseVector(indices=unique, values=best)

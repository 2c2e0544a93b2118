"""What the gateway does to every engine's output: Matryoshka truncation, THEN L2 normalisation,
then the wire encoding. One implementation for all engines keeps their vectors comparable."""

from __future__ import annotations

import base64

import numpy as np
import numpy.typing as npt

__all__ = ["encode_base64", "finalize"]

_EPS = 1e-12  # torch.nn.functional.normalize's eps, as the reference uses


def finalize(vectors: npt.NDArray[np.float32], dimensions: int | None, normalized: bool) -> npt.NDArray[np.float32]:
    """``vectors [n, d]`` -> ``[n, dimensions or d]`` float32, normalised per row if asked."""
    out = np.asarray(vectors, dtype=np.float32)
    if dimensions is not None and dimensions < out.shape[1]:
        out = out[:, :dimensions]
    if normalized:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = out / np.maximum(norms, _EPS)
    return np.ascontiguousarray(out, dtype=np.float32)


def encode_base64(vector: npt.NDArray[np.float32]) -> str:
    """Little-endian float32 bytes, base64 — what the OpenAI SDK decodes by default."""
    return base64.b64encode(vector.astype("<f4", copy=False).tobytes()).decode("ascii")

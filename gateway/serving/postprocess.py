"""What the gateway does to every engine's output: Matryoshka truncation, THEN L2 normalisation,
then the wire encoding. One implementation for all engines keeps their vectors comparable.

Wire encodings (``embedding_type`` in Jina's schema; OpenAI's ``encoding_format`` is the first
two):

* ``float``: the float32 values as a JSON list;
* ``base64``: little-endian float32 bytes, base64 (what the OpenAI SDK decodes by default);
* ``ubinary``: 1 bit per dimension, set when the value is > 0, 8 dimensions per byte, dimension 0
  in the most significant bit of byte 0 (``numpy.packbits`` order, sentence-transformers'
  ``quantize_embeddings``); a dimension count that is not a multiple of 8 is padded with zero bits
  at the end of the last byte, so ``d`` dimensions take ``ceil(d / 8)`` bytes;
* ``binary``: the same bytes minus 128, as int8.

Packed types travel base64-encoded (Jina's ``embedding_type``), or as JSON integer lists for
clients that still send the older ``encoding_type`` field and decode lists.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.serving.spec import EmbeddingType, OutputFormat

__all__ = [
    "encode_base64",
    "encode_vectors",
    "finalize",
    "pack_binary",
    "pack_ubinary",
]

_EPS = 1e-12  # torch.nn.functional.normalize's eps, as the reference uses

def finalize(vectors: npt.NDArray[np.float32], dimensions: int | None, normalized: bool) -> npt.NDArray[np.float32]:
    """``vectors [n, d]`` -> ``[n, dimensions or d]`` float32, normalised per row if asked."""
    out = np.asarray(vectors, dtype=np.float32)
    if dimensions is not None and dimensions < out.shape[1]:
        out = out[:, :dimensions]
    if normalized:  # numpy.linalg.norm(out, axis=1, keepdims=True)'s arithmetic, without its dispatch
        norms = np.sqrt(np.add.reduce(out * out, axis=1, keepdims=True))
        out = out / np.maximum(norms, _EPS)
    return np.ascontiguousarray(out, dtype=np.float32)


def encode_base64(vector: npt.NDArray[np.float32]) -> str:
    """Little-endian float32 bytes, base64 — what the OpenAI SDK decodes by default."""
    return base64.b64encode(vector.astype("<f4", copy=False).tobytes()).decode("ascii")


def pack_ubinary(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """``[n, d]`` -> ``[n, ceil(d/8)]`` uint8: bit set when the value is > 0, dimension 0 in the
    MSB of byte 0, zero bits padding the last byte."""
    return np.packbits(np.asarray(vectors) > 0, axis=-1, bitorder="big")


def pack_binary(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.int8]:
    """``pack_ubinary(vectors) - 128`` as int8 (the signed form vector databases call ``binary``)."""
    return (pack_ubinary(vectors).astype(np.int16) - 128).astype(np.int8)


def encode_vectors(vectors: npt.NDArray[np.float32], fmt: OutputFormat) -> list[Any]:
    """One wire ``embedding`` per row of the final (truncated, normalised) vectors."""
    columns = {t: _encode(vectors, t, fmt.packed) for t in fmt.types}
    if fmt.keyed:
        return [{t: columns[t][i] for t in fmt.types} for i in range(len(vectors))]
    return columns[fmt.types[0]]


def _encode(vectors: npt.NDArray[np.float32], kind: EmbeddingType, packed: str) -> list[Any]:
    if kind == "float":
        return list(vectors)  # numpy rows: orjson writes float32 exactly
    if kind == "base64":
        return [encode_base64(v) for v in vectors]
    rows = pack_ubinary(vectors) if kind == "ubinary" else pack_binary(vectors)
    if packed == "list":
        return [r.tolist() for r in rows]
    return [base64.b64encode(r.tobytes()).decode("ascii") for r in rows]

"""An entry: what an engine returned for one key, and its bytes on Redis.

One row per input for a plain job; one row per chunk (with their character ranges when a rule cut
the document) for a late-chunking job. Vectors are stored exactly (little-endian float32), so a
hit is bit-identical to the miss that filled it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

__all__ = ["CacheEntry", "EntryFormatError"]

_SEP = b"\n"


class EntryFormatError(ValueError):
    """Bytes from Redis that are not an entry of this version (treated as a miss)."""


@dataclass(frozen=True, slots=True)
class CacheEntry:
    #: (rows, dimension) float32, full dimension, un-normalised
    vectors: npt.NDArray[np.float32]
    #: one per row (what ``usage`` adds up)
    token_counts: tuple[int, ...]
    spans: tuple[tuple[int, int], ...] | None = None

    @property
    def nbytes(self) -> int:
        """What the memory tier charges for it: the vectors plus a fixed allowance for the rest."""
        return int(self.vectors.nbytes) + 64 + 16 * len(self.token_counts)

    def to_bytes(self) -> bytes:
        rows, dim = self.vectors.shape
        head = {"r": rows, "d": dim, "t": list(self.token_counts),
                "s": [list(s) for s in self.spans] if self.spans is not None else None}
        return orjson.dumps(head) + _SEP + np.ascontiguousarray(self.vectors, dtype="<f4").tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> CacheEntry:
        head_bytes, sep, body = blob.partition(_SEP)
        try:
            head = orjson.loads(head_bytes)
            rows, dim = int(head["r"]), int(head["d"])
            tokens = tuple(int(t) for t in head["t"])
            spans = tuple((int(a), int(b)) for a, b in head["s"]) if head["s"] is not None else None
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise EntryFormatError(f"unreadable cache entry header: {exc}") from exc
        if not sep or len(body) != rows * dim * 4 or len(tokens) != rows:
            raise EntryFormatError("cache entry size does not match its header")
        vectors = np.frombuffer(body, dtype="<f4").reshape(rows, dim).astype(np.float32, copy=True)
        return cls(vectors=vectors, token_counts=tokens, spans=spans)

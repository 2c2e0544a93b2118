"""Late chunking bookkeeping, as pure functions: which tokens each chunk pools, and how a document
longer than one forward pass is cut into overlapping windows.

Sequence layout (the reference ``encode()``'s): ``<s>`` at index 0, then the tokens of
``instruction + document``, then ``</s>``. A chunk's **span** is a half-open range of those
indices. The published late-chunking algorithm (arXiv 2409.04701) pools plain means over spans;
the first span starts at 0 (so it includes ``<s>`` and the instruction), the last ends after
``</s>``.

**Long late chunking**: a document of N tokens and a window of E tokens with overlap O runs as
windows ``[k·(E-O), min(k·(E-O)+E, N))``, each an independent forward pass (positions restart at
0); every window after the first drops its first O outputs, so the kept ranges partition
``[0, N)``: every token gets exactly one contextual vector, and spans are pooled across windows.
The engine turns each window into one scheduler payload that returns, per chunk segment inside
its kept range, the fp32 **sum** of the token states; :func:`combine` adds the sums of all
windows and divides by the span lengths. Sums compose exactly where means would not.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "EmptyChunkError",
    "Segment",
    "Window",
    "combine",
    "plan_windows",
    "spans_from_char_starts",
    "spans_from_token_ranges",
    "window_segments",
]


class EmptyChunkError(ValueError):
    """A chunk owns no token of its own (e.g. it is only whitespace)."""

    def __init__(self, index: int) -> None:
        super().__init__(f"chunk {index} contains no token")
        self.index = index


@dataclass(frozen=True, slots=True)
class Window:
    """One forward pass over tokens ``[start, end)``; outputs before ``keep`` are dropped."""

    start: int
    end: int
    keep: int


#: ``(chunk index, local start, local end)``: the part of a chunk's span inside one window
Segment = tuple[int, int, int]


def spans_from_char_starts(
    token_starts: Sequence[int], chunk_starts: Sequence[int], content_start: int
) -> list[tuple[int, int]]:
    """Spans of chunks that begin at the character offsets ``chunk_starts`` (ascending) of the
    tokenised string ``instruction + document``; ``content_start`` = len(instruction).

    ``token_starts``: first character of every content token (no ``<s>``/``</s>``). A token
    belongs to the last chunk that starts at or before its first character, so the joining space
    between two chunks never decides anything (tokens never start on it); tokens of the
    instruction belong to the first chunk. Raises :class:`EmptyChunkError` for a chunk that owns no
    token beyond the instruction.
    """
    n_chunks = len(chunk_starts)
    bounds = [content_start, *chunk_starts[1:]]
    own = [0] * n_chunks
    n_instruction = 0
    for start in token_starts:
        owner = bisect_right(bounds, start) - 1
        if owner < 0:
            n_instruction += 1
        else:
            own[owner] += 1
    for i, count in enumerate(own):
        if count == 0:
            raise EmptyChunkError(i)
    starts = [0]
    first = 1 + n_instruction  # index of the first token owned by a chunk
    for count in own[:-1]:
        first += count
        starts.append(first)
    ends = starts[1:] + [len(token_starts) + 2]
    return list(zip(starts, ends, strict=True))


def spans_from_token_ranges(ranges: Sequence[tuple[int, int]], n_instruction: int, n_content: int) -> list[tuple[int, int]]:
    """Spans of chunks given as ranges over the document's own tokens (after the instruction):
    shifted past ``<s>`` and the instruction, the first widened to start at 0, the last to end after
    ``</s>``. Ranges may overlap (token chunking with overlap)."""
    shift = 1 + n_instruction
    spans = [(a + shift, b + shift) for a, b in ranges]
    if spans:
        spans[0] = (0, spans[0][1])
        spans[-1] = (spans[-1][0], n_instruction + n_content + 2)
    return spans


def plan_windows(n_tokens: int, window: int, overlap: int) -> list[Window]:
    """The forward passes for ``n_tokens`` tokens; one window when they fit."""
    if window < 1 or not 0 <= overlap < window:
        raise ValueError("need window >= 1 and 0 <= overlap < window")
    out: list[Window] = []
    start = 0
    while True:
        end = min(start + window, n_tokens)
        out.append(Window(start, end, start if not out else start + overlap))
        if end >= n_tokens:
            return out
        start += window - overlap


def window_segments(spans: Sequence[tuple[int, int]], window: Window) -> list[Segment]:
    """The parts of ``spans`` inside the window's kept range, in window-local indices."""
    out: list[Segment] = []
    for i, (a, b) in enumerate(spans):
        lo, hi = max(a, window.keep), min(b, window.end)
        if lo < hi:
            out.append((i, lo - window.start, hi - window.start))
    return out


def combine(
    spans: Sequence[tuple[int, int]],
    segments: Sequence[Sequence[Segment]],
    sums: Sequence[npt.NDArray[np.float32]],
) -> npt.NDArray[np.float32]:
    """Mean vector per span from the per-window segment sums (``sums[w][j]`` belongs to
    ``segments[w][j]``). Checks that every span was covered exactly once."""
    dim = next(s.shape[-1] for s in sums if len(s))
    total = np.zeros((len(spans), dim), dtype=np.float64)
    counted = [0] * len(spans)
    for segs, rows in zip(segments, sums, strict=True):
        for (chunk, lo, hi), row in zip(segs, rows, strict=True):
            total[chunk] += row
            counted[chunk] += hi - lo
    lengths = [b - a for a, b in spans]
    if counted != lengths:
        raise AssertionError(f"span coverage mismatch: {counted} != {lengths}")
    return (total / np.asarray(lengths, dtype=np.float64)[:, None]).astype(np.float32)

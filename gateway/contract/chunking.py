"""How one long text is cut into chunks for late chunking, defined once for every engine.

Late chunking embeds a whole document in one pass and pools each chunk's token span, so the
chunk boundaries must be known before pooling. Two rules, both pure functions here so that every
engine (and the tests) give them the same meaning:

* ``sentences``: the text splits after a sentence terminator (``. ! ? …`` followed by whitespace,
  or the full-width ``。！？`` anywhere) and at blank lines; ``size`` sentences form one chunk.
  Deliberately simple: abbreviations such as "e.g. " also end a sentence.
* ``tokens``: ``size`` tokens of the model's tokenizer per chunk, consecutive chunks sharing
  ``overlap`` tokens. Token boundaries need the engine's tokenizer, so this module only defines
  which token ranges form the chunks (:func:`token_chunks`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["ChunkingRule", "group_sentences", "split_sentences", "token_chunks"]

#: a run of terminators (plus closing quotes/brackets) then whitespace or the end; full-width
#: terminators end a sentence even without whitespace (CJK text has none); a blank line always does
_BOUNDARY = re.compile(
    r"""[.!?…]+["'”’)\]]*(?=\s|$)|[。！？]+["'”’」』)）\]]*|\n[^\S\n]*\n\s*"""
)


@dataclass(frozen=True, slots=True)
class ChunkingRule:
    """``kind`` sentences: ``size`` sentences per chunk (``overlap`` must be 0);
    ``kind`` tokens: ``size`` tokens per chunk, ``overlap`` tokens shared by neighbours."""

    kind: Literal["sentences", "tokens"]
    size: int = 1
    overlap: int = 0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("size must be at least 1")
        if self.overlap < 0 or self.overlap >= self.size:
            raise ValueError("overlap must be at least 0 and smaller than size")
        if self.kind == "sentences" and self.overlap:
            raise ValueError("overlap applies to the tokens rule only")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character ranges ``[start, end)`` of the sentences of ``text``, whitespace trimmed, in
    order, never empty. A text without a terminator is one sentence."""
    out: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        end = m.end()
        _append_trimmed(text, start, end, out)
        start = end
    _append_trimmed(text, start, len(text), out)
    return out


def group_sentences(sentences: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """``size`` consecutive sentences per chunk: ``[first start, last end)``."""
    return [(sentences[i][0], sentences[min(i + size, len(sentences)) - 1][1]) for i in range(0, len(sentences), size)]


def token_chunks(n_tokens: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Token ranges ``[start, end)`` over ``n_tokens`` tokens: ``size`` per chunk, stride
    ``size - overlap``, the last chunk ending at ``n_tokens`` (it may be shorter). Every token is
    in at least one chunk; none when ``n_tokens`` is 0."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError("need size >= 1 and 0 <= overlap < size")
    out: list[tuple[int, int]] = []
    start = 0
    while start < n_tokens:
        end = min(start + size, n_tokens)
        out.append((start, end))
        if end == n_tokens:
            break
        start += size - overlap
    return out


def _append_trimmed(text: str, start: int, end: int, out: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        out.append((start, end))

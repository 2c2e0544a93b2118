"""TEI's response bodies: bare JSON arrays, as TEI's router writes them.

Why apart from the routes: TEI's bodies are not response models but plain arrays (rows of
vectors, sparse ``{index, value}`` lists, tokens with UTF-8 byte offsets), written by orjson; the
routes stay validate -> service -> render.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from typing import Any

import orjson

from gateway.contract import SparseVector, Tokenized

__all__ = ["json_body", "render_sparse", "render_tokens"]


def json_body(value: Any) -> bytes:
    """Any JSON value (numpy rows exactly as float32) as a body."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def render_sparse(sparse: Sequence[SparseVector]) -> bytes:
    """TEI's ``/embed_sparse`` body: per input, its non-zero weights as ``{index, value}``."""
    return json_body([[{"index": int(i), "value": float(v)} for i, v in zip(sp.indices, sp.values)] for sp in sparse])


def render_tokens(items: list[Tokenized]) -> bytes:
    """TEI's ``/tokenize`` body: offsets as UTF-8 BYTE offsets into the tokenised string (TEI is
    Rust: its offsets are bytes), ``text`` the token's source text, special tokens without offsets."""
    out = []
    for item in items:
        byte_at = [0, *accumulate(len(ch.encode("utf-8")) for ch in item.text)]
        out.append([
            {"id": t.id, "text": t.piece, "special": True, "start": None, "stop": None}
            if t.special or t.start is None or t.stop is None
            else {"id": t.id, "text": item.text[t.start : t.stop], "special": False,
                  "start": byte_at[t.start], "stop": byte_at[t.stop]}
            for t in item.tokens
        ])
    return json_body(out)

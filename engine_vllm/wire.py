"""vLLM's HTTP API, as this engine speaks it: request bodies and strict response parsing.

Pure functions, no I/O. Parsing is strict on purpose: a response that does not have exactly the
shape we asked for (wrong count, ragged or non-finite vectors, a proxy's HTML page) raises
:class:`MalformedResponse`, which the engine translates into the gateway's error tree; a
half-understood response must never become a vector in someone's database.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "MalformedResponse",
    "ServedModel",
    "embeddings_body",
    "fit_to_limit",
    "parse_embeddings",
    "parse_models",
    "parse_prompt_tokens",
    "parse_tokens",
    "pooling_body",
    "stack_rows",
    "tokenize_body",
]


class MalformedResponse(ValueError):
    """A 2xx answer that is not what vLLM's API promises."""


@dataclass(frozen=True, slots=True)
class ServedModel:
    id: str
    max_model_len: int | None


def embeddings_body(model: str, inputs: Sequence[str | Sequence[int]]) -> dict[str, Any]:
    """``POST /v1/embeddings``: full dimension, un-normalised, little-endian float32 base64.

    No ``dimensions``: the gateway truncates. ``use_activation: false`` switches off vLLM's
    normalisation (its pooler's "activation" for embeddings is L2 normalisation), so vLLM returns
    the raw mean-pooled vector exactly as the HF engine does, and the gateway normalises every
    engine's output the same way — which also makes ``normalized: false`` mean the same thing on
    both engines. Token ids are sent as lists (special tokens included): vLLM embeds them as given.
    """
    return {
        "model": model,
        "input": [list(x) if not isinstance(x, str) else x for x in inputs],
        "encoding_format": "base64",
        "embed_dtype": "float32",
        "endianness": "little",
        "use_activation": False,
    }


def pooling_body(model: str, inputs: Sequence[Sequence[int]]) -> dict[str, Any]:
    """``POST /pooling`` with task ``embed``: the same request as :func:`embeddings_body` on vLLM's
    pooling route, which answers each row under ``data`` instead of ``embedding``.

    For token ids this route is far cheaper for vLLM's HTTP front end: ``/v1/embeddings`` validates
    its body against a union that includes chat requests, and a list of id lists fails those chat
    shapes id by id (vLLM 0.32: about 2 ms for 15 inputs of 20 ids, against 0.04 ms here).
    """
    return {**embeddings_body(model, inputs), "task": "embed"}


def tokenize_body(model: str, text: str) -> dict[str, Any]:
    """``POST /tokenize`` with the special tokens, i.e. the ids vLLM would embed for ``text``."""
    return {"model": model, "prompt": text, "add_special_tokens": True}


def _object(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise MalformedResponse(f"{what}: expected a JSON object, got {type(payload).__name__}")
    return payload


def stack_rows(rows: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
    """``[len(rows), d]`` from vectors of one length; a lone row as a view, without ``np.stack``'s copy."""
    return rows[0][None, :] if len(rows) == 1 else np.stack(rows)


def parse_embeddings(payload: Any, n_inputs: int, field: str = "embedding") -> npt.NDArray[np.float32]:
    """``[n_inputs, d]`` float32 from an embeddings response, rows in input order; each row under
    ``field`` (``data`` in a ``/pooling`` answer)."""
    data = _object(payload, "embeddings").get("data")
    if not isinstance(data, list) or len(data) != n_inputs:
        got = len(data) if isinstance(data, list) else type(data).__name__
        raise MalformedResponse(f"embeddings: expected {n_inputs} items in data, got {got}")
    rows: list[npt.NDArray[np.float32] | None] = [None] * n_inputs
    for item in data:
        if not isinstance(item, dict):
            raise MalformedResponse("embeddings: a data item is not an object")
        index, emb = item.get("index"), item.get(field)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n_inputs or rows[index] is not None:
            raise MalformedResponse(f"embeddings: bad or repeated index {index!r}")
        if isinstance(emb, str):
            try:
                raw = base64.b64decode(emb, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise MalformedResponse(f"embeddings: {field} is not valid base64") from exc
            if not raw or len(raw) % 4:
                raise MalformedResponse(f"embeddings: {len(raw)} bytes is not a float32 vector")
            rows[index] = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif isinstance(emb, list) and emb and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in emb):
            rows[index] = np.asarray(emb, dtype=np.float32)
        else:
            raise MalformedResponse(f"embeddings: {field} is neither base64 nor a list of numbers")
    dims = {r.shape[0] for r in rows if r is not None}
    if len(dims) != 1:
        raise MalformedResponse(f"embeddings: vectors of different lengths {sorted(dims)}")
    out = stack_rows([r for r in rows if r is not None])
    if not np.isfinite(out).all():
        raise MalformedResponse("embeddings: non-finite values")
    return out


def parse_prompt_tokens(payload: Any) -> int:
    """``usage.prompt_tokens``: the tokens vLLM embedded (special tokens included)."""
    usage = _object(payload, "embeddings").get("usage")
    n = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise MalformedResponse("embeddings: usage.prompt_tokens is missing or not a positive integer")
    return n


def parse_tokens(payload: Any) -> list[int]:
    tokens = _object(payload, "tokenize").get("tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise MalformedResponse("tokenize: expected a non-empty list of integer tokens")
    return tokens


def parse_models(payload: Any) -> list[ServedModel]:
    data = _object(payload, "models").get("data")
    if not isinstance(data, list) or not data:
        raise MalformedResponse("models: expected a non-empty data list")
    out = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise MalformedResponse("models: an item has no string id")
        mml = item.get("max_model_len")
        out.append(ServedModel(item["id"], mml if isinstance(mml, int) and not isinstance(mml, bool) else None))
    return out


def fit_to_limit(ids: list[int], limit: int, *, truncate: bool, left: bool = False) -> tuple[list[int], bool]:
    """``(ids, over)``: ``ids`` (``<s> … </s>``) within ``limit`` tokens, as the HF engine does it.

    Over the limit: ``over`` is True and, when ``truncate``, the ids keep their first
    ``limit - 1`` tokens and the closing ``</s>`` (the reference's truncation) — or, ``left``, the
    opening ``<s>`` and the last ``limit - 1`` (TEI's ``Left``); otherwise they are returned
    unchanged for the caller to refuse.
    """
    if len(ids) <= limit:
        return ids, False
    if not truncate:
        return ids, True
    if left:
        return ids[:1] + ids[len(ids) - (limit - 1) :], True
    return ids[: limit - 1] + ids[-1:], True

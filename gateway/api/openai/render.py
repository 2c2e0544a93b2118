"""The OpenAI/Jina response bodies, from what the service decided.

Why apart from the routes: a route is validate -> service -> render; what a body looks like (the
encodings, sparse weights beside the dense vector, chunk spans, a model's card) is this module's
one concern, and :func:`dump_json` writes it fast without a second validation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from pydantic import BaseModel

from gateway.api.openai.protocol import (
    ChunkData,
    ChunkEmbeddingResponse,
    EmbeddingData,
    EmbeddingResponse,
    ModelCard,
    SparseEmbedding,
    SparseEmbeddingData,
    Usage,
)
from gateway.api.wire_view import wire_view
from gateway.catalog import Resolved
from gateway.contract import EngineCapabilities, route_key
from gateway.serving.postprocess import encode_vectors
from gateway.serving.service import EmbedOutcome
from gateway.serving.spec import OutputFormat

__all__ = ["dump_json", "model_card", "render_chunks", "render_embeddings"]


def dump_json(model: BaseModel) -> bytes:
    """A response model as JSON bytes, fast: the model is built unvalidated (``model_construct``)
    by the renderer, numpy rows are written by orjson exactly as float32, and the shape is the
    model's own (its fields in order), so the documented schema is the rendered one."""
    return orjson.dumps(model, default=_fields, option=orjson.OPT_SERIALIZE_NUMPY)


def _fields(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.__dict__
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _usage(outcome: EmbedOutcome) -> Usage:
    tokens = sum(outcome.token_counts)
    return Usage.model_construct(prompt_tokens=tokens, total_tokens=tokens)


def render_embeddings(outcome: EmbedOutcome, output: OutputFormat) -> bytes:
    """``POST /v1/embeddings``: one item per input, in the requested encoding (multi-vector rows
    as lists of float vectors), with its sparse weights when they were asked for."""
    items: list[Any] = (
        [list(m) for m in outcome.multivectors] if outcome.multivectors is not None
        else encode_vectors(outcome.vectors, output)
    )
    if outcome.sparse is not None:
        data: list[EmbeddingData] = [
            SparseEmbeddingData.model_construct(
                index=i, embedding=e,
                sparse_embedding=SparseEmbedding.model_construct(indices=sp.indices.tolist(), values=sp.values.tolist()),
            )
            for i, (e, sp) in enumerate(zip(items, outcome.sparse, strict=True))
        ]
    else:
        data = [EmbeddingData.model_construct(index=i, embedding=e) for i, e in enumerate(items)]
    return dump_json(EmbeddingResponse.model_construct(data=data, model=outcome.model, usage=_usage(outcome)))


def render_chunks(outcome: EmbedOutcome, text: str, output: OutputFormat) -> bytes:
    """``POST /v1/chunk-embeddings``: each chunk's text, its span in ``text`` and its vector."""
    items = encode_vectors(outcome.vectors, output)
    spans = outcome.spans or ()
    return dump_json(ChunkEmbeddingResponse.model_construct(
        data=[
            ChunkData.model_construct(index=i, text=text[a:b], start=a, end=b, embedding=e)
            for i, ((a, b), e) in enumerate(zip(spans, items, strict=True))
        ],
        model=outcome.model,
        usage=_usage(outcome),
    ))


def model_card(
    resolved: Resolved, caps: Sequence[EngineCapabilities], tasks: Iterable[str],
    spaces: dict[str, dict[str, str]] | None = None,
) -> ModelCard:
    """One name as ``/v1/models`` lists it: what the name means (the catalog's :class:`Resolved`,
    by field name; the name is the card's ``id``) and what its model offers, from its engines'
    capabilities (``tasks``: the route keys it serves)."""
    return wire_view(
        ModelCard,
        resolved,
        id=resolved.name,
        tasks=list(tasks),
        max_dimensions=max((c.dimensions for c in caps), default=None),
        matryoshka=all(c.matryoshka for c in caps) if caps else None,
        outputs=sorted({o for c in caps for o in c.outputs}),
        vocab_size=max((c.vocab_size for c in caps if c.vocab_size is not None), default=None),
        space=_own_space(resolved, caps, spaces or {}),
        spaces=spaces,
    )


def _own_space(resolved: Resolved, caps: Sequence[EngineCapabilities], spaces: dict[str, dict[str, str]]) -> str | None:
    """The space of the name's own task at its own dimensions (else the full width)."""
    width = resolved.dimensions or max((c.dimensions for c in caps), default=0)
    return spaces.get(route_key(resolved.task), {}).get(str(width))

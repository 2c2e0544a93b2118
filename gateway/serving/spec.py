"""A request in internal terms: what to embed and how the result goes on the wire.

Why its own module: every dialect's wire schemas (:mod:`gateway.api.openai.protocol`,
:mod:`gateway.api.tei.protocol`) convert *into* these types at the route, and the service and
post-processing work *from* them, so neither the service nor the encoder imports a wire module
(arrows point one way: api -> serving).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.cache.policy import CacheMode
from gateway.contract import DENSE, ChunkingRule, Output, TokenIds, TruncationDirection

__all__ = ["EMBEDDING_TYPES", "EmbeddingSpec", "EmbeddingType", "OutputFormat"]

EmbeddingType = Literal["float", "base64", "binary", "ubinary"]
EMBEDDING_TYPES: tuple[EmbeddingType, ...] = ("float", "base64", "binary", "ubinary")


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """How vectors go on the wire."""

    types: tuple[EmbeddingType, ...] = ("float",)
    #: the client asked for a list of types: every ``embedding`` is an object ``{type: value}``
    keyed: bool = False
    #: packed types as a base64 string, or as a JSON list of byte values
    packed: Literal["base64", "list"] = "base64"


@dataclass(frozen=True, slots=True)
class EmbeddingSpec:
    """A validated request, in internal terms (alias not yet resolved)."""

    model: str | None
    inputs: tuple[str | TokenIds, ...]
    has_token_ids: bool
    #: the task by the model's own name (a well-known one as :class:`~gateway.contract.Task`)
    task: str | None
    task_given: bool
    dimensions: int | None
    normalized: bool
    truncate: bool
    output: OutputFormat = OutputFormat()
    #: the inputs are consecutive chunks of one document (or, with ``chunking``, the document)
    late_chunking: bool = False
    chunking: ChunkingRule | None = None
    #: with ``truncate``: which end of an over-long input is dropped (TEI's ``truncation_direction``)
    truncation_direction: TruncationDirection = "right"
    #: return every token's state too (TEI's ``/embed_all``)
    token_embeddings: bool = False
    #: the request's use of the cache (its headers, :func:`gateway.cache.policy.cache_mode`)
    cache: CacheMode = "use"
    #: what to compute per input: dense always; ``sparse`` and ``multivector`` where the model has them
    outputs: frozenset[Output] = frozenset({DENSE})
    #: the vector space the client expects (``x-embed-expect-space``): served only there, else a 409
    expect_space: str | None = None

"""The engine protocol and the internal job/result types.

Wire types (OpenAI/Jina request bodies) never reach an engine: the API layer turns them into an
:class:`EmbedJob`. An engine returns full-dimension, *un-normalised* mean-pooled vectors; the gateway
applies Matryoshka truncation, normalisation and encoding itself, so every engine's output goes
through the same post-processing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from gateway.contract.chunking import ChunkingRule

__all__ = [
    "DENSE",
    "MULTIVECTOR",
    "NULL_OBSERVER",
    "OUTPUTS",
    "SPARSE",
    "EmbedJob",
    "EmbedResult",
    "Engine",
    "EngineCapabilities",
    "EngineObserver",
    "Health",
    "Output",
    "SparseVector",
    "Token",
    "TokenIds",
    "Tokenized",
    "Tokenizer",
    "TruncationDirection",
]

#: An input given as token ids of the model's own tokenizer (content ids, no special tokens).
TokenIds = tuple[int, ...]
#: what an engine can compute for an input. ``dense``: one vector (the gateway truncates and
#: normalises it); ``sparse``: one weight per vocabulary id (BGE-M3's lexical weights, SPLADE);
#: ``multivector``: one vector per token (ColBERT-style late interaction), final as the engine returns it
Output = Literal["dense", "sparse", "multivector"]
DENSE: Output = "dense"
SPARSE: Output = "sparse"
MULTIVECTOR: Output = "multivector"
OUTPUTS: tuple[Output, ...] = (DENSE, SPARSE, MULTIVECTOR)

#: which end of an over-long input ``truncate`` drops: the tail (the reference's) or the head (TEI's ``Left``)
TruncationDirection = Literal["right", "left"]


@dataclass(frozen=True, slots=True)
class SparseVector:
    """One input's sparse output: vocabulary ids (ascending, unique) and their weights (> 0)."""

    indices: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]

    def as_dict(self) -> dict[int, float]:
        return {int(i): float(v) for i, v in zip(self.indices, self.values)}


@dataclass(frozen=True, slots=True)
class EmbedJob:
    """One request's worth of work for one engine.

    ``inputs`` are texts, or token-id sequences when the operator allows them. With
    ``late_chunking`` the inputs are consecutive chunks of one document (joined with a single
    space) and the result has one vector per input. With ``chunking`` as well, ``inputs`` is the
    one document and the engine cuts it by that rule; the result then carries each chunk's
    character range (:attr:`EmbedResult.spans`). With ``token_embeddings`` the result also carries
    every token's last hidden state (:attr:`EmbedResult.token_states`): only engines whose
    capabilities say ``token_embeddings`` get such a job.
    """

    inputs: Sequence[str | TokenIds]
    #: the task by the engine's own name (one of its ``capabilities.tasks``); ``None`` = no task
    task: str | None
    truncate: bool = False
    late_chunking: bool = False
    chunking: ChunkingRule | None = None
    request_id: str = ""
    #: ``time.monotonic()`` after which the job is worthless to its client; ``None`` = no deadline.
    deadline: float | None = None
    #: most tokens the whole job may have (``limits.max_tokens_per_request``); an engine counts
    #: before it runs any forward pass and raises ``PayloadTooLargeError`` beyond it. ``None`` = no limit.
    max_total_tokens: int | None = None
    #: with ``truncate``: ``right`` keeps the first tokens, ``left`` the last (``<s>``/``</s>`` kept)
    truncation_direction: TruncationDirection = "right"
    #: also return each input's per-token states (TEI's ``/embed_all``)
    token_embeddings: bool = False
    #: which outputs to compute (a subset of the engine's ``capabilities.outputs``); ``dense`` is
    #: always computed (``EmbedResult.vectors``)
    outputs: frozenset[Output] = frozenset({DENSE})

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("an EmbedJob needs at least one input")
        if (self.late_chunking or self.token_embeddings) and self.outputs != {DENSE}:
            raise ValueError("sparse and multi-vector outputs are for plain jobs only")
        if self.token_embeddings and self.late_chunking:
            raise ValueError("token embeddings and late chunking cannot be asked of one job")
        if self.chunking is not None and (not self.late_chunking or len(self.inputs) != 1):
            raise ValueError("a chunking rule needs late_chunking and exactly one input (the document)")


@dataclass(frozen=True, slots=True)
class EmbedResult:
    """Mean-pooled fp32 vectors, one row per input (or per chunk), full model dimension."""

    vectors: npt.NDArray[np.float32]
    #: tokens per input, instruction and special tokens included (what ``usage`` counts); for
    #: late chunking, each chunk's share of the document (they add up to its token count). An
    #: engine that learns only a batch's total (a remote server's ``usage``) gives it as ONE
    #: entry: consumers only ever add these up.
    token_counts: tuple[int, ...]
    engine: str
    queue_seconds: float = 0.0
    inference_seconds: float = 0.0
    #: jobs with a chunking rule: each chunk's ``[start, end)`` character range in the document
    spans: tuple[tuple[int, int], ...] | None = None
    #: ``token_embeddings`` jobs: per input, the fp32 last hidden state of every token ``[n_i, d]``
    #: (``<s>``, the instruction and ``</s>`` included, un-normalised); ``vectors`` are their means
    token_states: tuple[npt.NDArray[np.float32], ...] | None = None
    #: jobs that asked for ``sparse``: one per input
    sparse: tuple[SparseVector, ...] | None = None
    #: jobs that asked for ``multivector``: per input ``[n_i, d]`` fp32 rows, final (the gateway
    #: does not truncate or normalise them)
    multivectors: tuple[npt.NDArray[np.float32], ...] | None = None


@dataclass(frozen=True, slots=True)
class EngineCapabilities:
    """What an engine can do; the router reads this, never the engine's type."""

    #: tasks it serves exactly, by its model's own names; ``None`` in the set means "no task"
    #: (base weights, no instruction or prompt)
    tasks: frozenset[str | None]
    #: full dense output dimension
    dimensions: int
    #: maximum tokens per input, special and instruction tokens included
    max_input_tokens: int
    #: whether it can pool chunk spans of one forward pass (late chunking)
    late_chunking: bool = False
    #: whether it accepts token-id inputs in the model's own vocabulary
    token_ids: bool = True
    #: whether it can return every token's last hidden state (``EmbedJob.token_embeddings``)
    token_embeddings: bool = False
    #: whether it implements :class:`Tokenizer` (tokenise with offsets, decode ids)
    tokenizer: bool = False
    # What it runs and its own limits, for GET /info (None where the engine cannot tell).
    model: str | None = None
    revision: str | None = None
    dtype: str | None = None
    device: str | None = None
    #: numeric identity of its vectors: ``fp32-exact``, ``bf16``, ``fp16`` or ``int8`` (lossy, opt-in)
    numerics: str | None = None
    max_batch_tokens: int | None = None
    max_batch_requests: int | None = None
    #: admission bounds: queued tokens (in-process) or queued inputs (a remote server) before "overloaded"
    max_queued_tokens: int | None = None
    max_queued_inputs: int | None = None
    #: threads that tokenise (TEI's ``tokenization_workers``)
    tokenization_workers: int | None = None
    #: what it can compute per input (see :data:`Output`)
    outputs: frozenset[Output] = frozenset({DENSE})
    #: whether a prefix of its dense vector is a valid smaller embedding (Matryoshka training):
    #: ``dimensions`` below the full width is refused for a model without it
    matryoshka: bool = True
    #: vocabulary size (the dimension of ``sparse`` outputs, pgvector's ``sparsevec(n)``)
    vocab_size: int | None = None
    #: bytes the loaded weights occupy (host or device memory); None where it cannot tell (remote)
    resident_bytes: int | None = None
    #: what its model's weights are (hub id@commit, a content hash, or an operator's declaration for
    #: a remote model), plus anything else fixed per model that moves its vectors (a
    #: sentence-transformers model's prompts): the gateway's vector-space id is built on it;
    #: ``None`` = unknown (the space then names the engine itself)
    weights: str | None = None
    #: numeric identity: equal for two engines only if they compute the same vectors for the same
    #: job (engine kind, checkpoint revision or content hash, adapters, dtype, device kind, anything
    #: else that moves a bit). The gateway's cache keys entries by it; ``None`` = unknown, never cached.
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str = ""
    extra: dict[str, object] = field(default_factory=dict)


class EngineObserver(Protocol):
    """What an engine reports about its own work, as it happens (the gateway turns it into metrics).

    Why a protocol here: the batcher is where batch sizes and queue depth are decided, and only
    the engine sees it; the engine must not import the gateway's metrics (arrows point one way)."""

    def batch(self, engine: str, *, sequences: int, tokens: int, seconds: float) -> None:
        """One forward pass ran: how many sequences and tokens, in how many seconds."""

    def queue(self, engine: str, *, depth: int, tokens: int) -> None:
        """The engine's queue changed: ``depth`` waiting sequences (or inputs) holding ``tokens``."""


class _NullObserver:
    def batch(self, engine: str, *, sequences: int, tokens: int, seconds: float) -> None:
        pass

    def queue(self, engine: str, *, depth: int, tokens: int) -> None:
        pass


#: the observer of an engine nobody watches (tests, tools)
NULL_OBSERVER: EngineObserver = _NullObserver()


@dataclass(frozen=True, slots=True)
class Token:
    """One token of :meth:`Tokenizer.tokenize`: offsets are CHARACTER offsets into
    :attr:`Tokenized.text` (``None`` for special tokens, which have no source text)."""

    id: int
    #: the token as the vocabulary spells it (``<s>``, ``▁Zü``)
    piece: str
    special: bool
    start: int | None
    stop: int | None


@dataclass(frozen=True, slots=True)
class Tokenized:
    """One tokenised input: the string the tokenizer saw (instruction + input) and its tokens."""

    text: str
    tokens: tuple[Token, ...]


@runtime_checkable
class Tokenizer(Protocol):
    """What an engine whose capabilities say ``tokenizer`` also does (TEI's ``/tokenize`` and
    ``/decode``). A separate protocol: most engines need not tokenise for clients."""

    async def tokenize(self, texts: Sequence[str], task: str | None, *, add_special_tokens: bool) -> list[Tokenized]:
        """``instruction(task) + text`` tokenised, no length limit. Raises errors of the tree only."""

    async def decode(self, ids: Sequence[Sequence[int]], *, skip_special_tokens: bool) -> list[str]:
        """Text of each id sequence; an id outside the vocabulary is an ``InvalidRequestError``."""


@runtime_checkable
class Engine(Protocol):
    """Five things every engine does. Implementations: ``engine_hf.HFEngine``,
    ``engine_vllm.VLLMEngine``, and the scripted fakes in the tests."""

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> EngineCapabilities: ...

    async def start(self) -> None:
        """Load / connect. Raises an ``EmbedGatewayError`` if the engine cannot serve."""

    async def embed(self, job: EmbedJob) -> EmbedResult:
        """Serve one job. Raises only errors of the tree in :mod:`gateway.contract.errors`.

        Cancelling the awaiting task withdraws the job's queued work."""

    async def check_health(self) -> Health:
        """Cheap liveness/readiness probe; never raises."""

    async def aclose(self) -> None:
        """Stop accepting work, fail what is pending, release resources. Idempotent."""

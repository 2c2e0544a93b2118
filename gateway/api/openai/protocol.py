"""The OpenAI embeddings API and Jina's, as one wire dialect: ``POST /v1/embeddings`` takes both
APIs' fields in one body, ``POST /v1/chunk-embeddings`` is Jina's segmenter and late chunking in
one call, ``GET /v1/models`` lists the names a request may send.

Why one module for both APIs: Jina's embeddings API is OpenAI's plus fields (``task``,
``late_chunking``, ``embedding_type``, ...), and their clients send them to the same path. Request
bodies convert themselves into internal specs at the boundary (:meth:`EmbeddingRequest.to_spec`);
no pydantic wire object travels further than the route. The response types are filled by
:mod:`gateway.api.openai.render`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationInfo, field_validator

from gateway.api.quoting import quote_value
from gateway.contract import DENSE, MULTIVECTOR, SPARSE, ChunkingRule, InvalidRequestError, Output, Task, TokenIds, task_of_key
from gateway.serving.spec import EMBEDDING_TYPES, EmbeddingSpec, EmbeddingType, OutputFormat

__all__ = [
    "ChunkData",
    "ChunkEmbeddingRequest",
    "ChunkEmbeddingResponse",
    "EmbeddingData",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "ModelCard",
    "ModelList",
    "SentenceChunking",
    "SparseEmbedding",
    "SparseEmbeddingData",
    "TextInput",
    "TokenChunking",
    "Usage",
]


class TextInput(BaseModel):
    """Jina's input object; only text (jina-embeddings-v3 has no other modality)."""

    model_config = ConfigDict(extra="forbid")
    text: StrictStr


InputType = (
    StrictStr | TextInput | list[StrictStr | TextInput] | list[StrictInt] | list[list[StrictInt]]
)
EmbeddingTypes = EmbeddingType | list[EmbeddingType]
#: the well-known task names in the OpenAPI schema (a model may declare others: GET /v1/models)
_TASK_EXAMPLES: dict[str, Any] = {"examples": [*(t.value for t in Task), "none"]}


def _unwrap_text(item: Any, where: str) -> Any:
    """Jina's ``{"text": ...}`` object -> its string; anything else unchanged."""
    if not isinstance(item, dict):
        return item
    if set(item) == {"text"}:
        if not isinstance(item["text"], str):
            raise ValueError(f"{where}.text must be a string; got {quote_value(item['text'])}")
        return item["text"]
    raise ValueError(
        f"{where} must be a string or a {{\"text\": ...}} object (jina-embeddings-v3 embeds text only; "
        f"got an object with keys {sorted(item)})"
    )


def _check_text_input(v: Any) -> Any:
    """The shared ``input`` rules: text objects unwrapped, no empty strings, no empty lists."""
    v = _unwrap_text(v, "input")
    if isinstance(v, str):
        if not v:
            raise ValueError("input must not be an empty string")
        return v
    if not isinstance(v, list):
        raise ValueError(f"input must be a string, a list of strings, or token ids; got {quote_value(v)}")
    if not v:
        raise ValueError("input must not be an empty list")
    v = [_unwrap_text(x, f"input[{i}]") for i, x in enumerate(v)]
    if all(isinstance(x, str) for x in v):
        empty = next((i for i, x in enumerate(v) if not x), None)
        if empty is not None:
            raise ValueError(f"input[{empty}] is an empty string")
        return v
    if all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return v
    if all(isinstance(x, list) for x in v):
        for i, ids in enumerate(v):
            if not ids:
                raise ValueError(f"input[{i}] is an empty token list")
            bad = next((j for j, x in enumerate(ids) if _kind(x) != "int"), None)
            if bad is not None:
                raise ValueError(
                    f"input[{i}][{bad}] is {quote_value(ids[bad])}: input[{i}] must be a list of integer token ids"
                )
        return v
    first = _kind(v[0])
    bad = next(i for i, x in enumerate(v) if _kind(x) != first or first is None)
    raise ValueError(
        f"input[{bad}] is {quote_value(v[bad])}: input must be a string, a list of strings, a list of token ids "
        "(integers), or a list of such lists, one kind per list"
    )


def _kind(x: Any) -> str | None:
    """What an item of an ``input`` list is (JSON booleans are not token ids)."""
    if isinstance(x, str):
        return "str"
    if isinstance(x, int) and not isinstance(x, bool):
        return "int"
    return "list" if isinstance(x, list) else None


def _check_embedding_types(v: Any, field: str) -> Any:
    """One type or a non-empty list of distinct types, with a message naming the valid ones."""
    if v is None:
        return v
    valid = ", ".join(EMBEDDING_TYPES)
    values = v if isinstance(v, list) else [v]
    if isinstance(v, list) and not v:
        raise ValueError(f"{field} must not be an empty list; valid types: {valid}")
    for x in values:
        if x not in EMBEDDING_TYPES or not isinstance(x, str):
            raise ValueError(f"{field} {quote_value(x)} is not supported; valid types: {valid} (or a list of them)")
    if len(set(values)) != len(values):
        raise ValueError(f"{field} lists a type twice")
    return v


def _output_format(fields: set[str], encoding_format: str, embedding_type: Any, encoding_type: Any) -> OutputFormat:
    """OpenAI's ``encoding_format``, Jina's ``embedding_type``, or Jina's older ``encoding_type``:
    one of them at most."""
    given = [f for f, value in (("embedding_type", embedding_type), ("encoding_type", encoding_type)) if value is not None]
    if "encoding_format" in fields and given:
        raise InvalidRequestError(
            f"encoding_format (OpenAI's schema) and {given[0]} (Jina's schema) both choose the wire format; "
            "send only one of them (the OpenAI SDK always sends encoding_format: use plain HTTP or a Jina "
            "client for binary embeddings)",
            param=given[0],
        )
    if len(given) == 2:
        raise InvalidRequestError(
            "embedding_type and encoding_type (its older name) are both given; send only embedding_type",
            param="encoding_type",
        )
    if embedding_type is not None:
        types = tuple(embedding_type) if isinstance(embedding_type, list) else (embedding_type,)
        return OutputFormat(types, keyed=isinstance(embedding_type, list))
    if encoding_type is not None:
        types = tuple(encoding_type) if isinstance(encoding_type, list) else (encoding_type,)
        return OutputFormat(types, keyed=isinstance(encoding_type, list), packed="list")
    return OutputFormat((encoding_format,))  # type: ignore[arg-type]


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``: OpenAI's schema and Jina's, in one body.

    OpenAI fields: ``input``, ``model``, ``encoding_format``, ``dimensions``, ``user``. Jina's add
    ``{"text": ...}`` input objects, ``task``, ``late_chunking``, ``embedding_type`` (or its older
    name ``encoding_type``), ``normalized`` and ``truncate``. Unknown fields are rejected.
    """

    model_config = ConfigDict(extra="forbid")

    input: InputType = Field(
        description="Text, {\"text\": ...} object, a list of either, or token ids of this model's XLM-R "
        "tokenizer (see docs/api.md). With late_chunking: consecutive chunks of one document."
    )
    model: StrictStr | None = Field(None, description="A model alias (GET /v1/models); it may imply a task.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64 = little-endian float32 bytes (the OpenAI SDK's default)."
    )
    dimensions: StrictInt | None = Field(None, ge=1, description="Matryoshka truncation, then normalisation (up to the model's width).")
    user: StrictStr | None = Field(None, description="Accepted for compatibility; not used.")
    task: StrictStr | None = Field(
        None,
        description="The model's task (GET /v1/models lists them); jina-embeddings-v3: retrieval.query | "
        "retrieval.passage | separation | classification | text-matching | none",
        json_schema_extra=_TASK_EXAMPLES,
    )
    normalized: StrictBool = Field(True, description="L2-normalise after truncation.")
    truncate: StrictBool = Field(False, description="Drop the tail of over-long inputs instead of a 400.")
    late_chunking: StrictBool = Field(
        False,
        description="The inputs are consecutive chunks of ONE document: joined with a space, embedded in one "
        "pass (windows beyond the model maximum), one vector per chunk from its token span.",
    )
    embedding_type: EmbeddingTypes | None = Field(
        None,
        description="Jina: float | base64 | binary | ubinary, or a list of them (then each embedding is an "
        "object keyed by type). Packed types are base64. Not together with encoding_format.",
    )
    encoding_type: EmbeddingTypes | None = Field(
        None,
        description="The older name of embedding_type (LangChain's and LlamaIndex's Jina clients); binary "
        "types then come back as lists of byte values.",
    )
    return_sparse: StrictBool = Field(
        False,
        description="Also return each input's sparse (lexical) weights as sparse_embedding: {indices: vocabulary "
        "ids, values: weights}, for models with a sparse output (BGE-M3). The dense embedding stays.",
    )
    return_multivector: StrictBool = Field(
        False,
        description="Jina: each embedding is the list of the input's token vectors (multi-vector, ColBERT-style), "
        "for models with a multi-vector output (BGE-M3). Float only.",
    )

    @field_validator("input", mode="before")
    @classmethod
    def _check_input(cls, v: Any) -> Any:
        return _check_text_input(v)


    @field_validator("embedding_type", "encoding_type", mode="before")
    @classmethod
    def _check_types(cls, v: Any, info: ValidationInfo) -> Any:
        return _check_embedding_types(v, info.field_name)

    def to_spec(self) -> EmbeddingSpec:
        """Raises ``InvalidRequestError`` for combinations of fields that cannot go together."""
        raw: Any = self.input
        inputs: tuple[str | TokenIds, ...]
        if isinstance(raw, str):
            inputs, ids = (raw,), False
        elif isinstance(raw[0], str):
            inputs, ids = tuple(raw), False
        elif isinstance(raw[0], int):
            inputs, ids = (tuple(raw),), True
        else:
            inputs, ids = tuple(tuple(x) for x in raw), True
        if self.late_chunking and ids:
            raise InvalidRequestError(
                "late_chunking needs text inputs (chunk spans are found from character offsets), not token ids",
                param="input",
            )
        output = _output_format(self.model_fields_set, self.encoding_format, self.embedding_type, self.encoding_type)
        outputs: set[Output] = {DENSE}
        if self.return_sparse:
            outputs.add(SPARSE)
        if self.return_multivector:
            outputs.add(MULTIVECTOR)
            if output.types != ("float",) or output.keyed:
                raise InvalidRequestError("return_multivector returns float vectors only; drop embedding_type / "
                                          "encoding_format or set them to float", param="return_multivector")
        if len(outputs) > 1 and self.late_chunking:
            raise InvalidRequestError("sparse and multi-vector outputs cannot be combined with late_chunking",
                                      param="late_chunking")
        return EmbeddingSpec(
            model=self.model,
            inputs=inputs,
            has_token_ids=ids,
            task=task_of_key(self.task),
            task_given=self.task is not None,
            dimensions=self.dimensions,
            normalized=self.normalized,
            truncate=self.truncate,
            output=output,
            late_chunking=self.late_chunking,
            outputs=frozenset(outputs),
        )


class SentenceChunking(BaseModel):
    """Split after sentence terminators and at blank lines; ``size`` sentences per chunk."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["sentences"]
    size: StrictInt = Field(1, ge=1, description="Sentences per chunk.")


class TokenChunking(BaseModel):
    """``size`` tokens of the model's tokenizer per chunk, neighbours sharing ``overlap`` tokens."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["tokens"]
    size: StrictInt = Field(ge=1, description="Tokens per chunk (the instruction and special tokens not counted).")
    overlap: StrictInt = Field(0, ge=0, description="Tokens shared by consecutive chunks; smaller than size.")


class ChunkEmbeddingRequest(BaseModel):
    """``POST /v1/chunk-embeddings``: one long text, a chunking rule, late-chunked vectors back."""

    model_config = ConfigDict(extra="forbid")

    input: StrictStr | TextInput = Field(description="The document: one text (or {\"text\": ...}).")
    chunking: Annotated[SentenceChunking | TokenChunking, Field(discriminator="type")] = Field(
        default_factory=lambda: SentenceChunking(type="sentences"),
        description='{"type": "sentences", "size": 1} (default) or {"type": "tokens", "size": N, "overlap": M}',
    )
    model: StrictStr | None = Field(None, description="A model alias (GET /v1/models); it may imply a task.")
    task: StrictStr | None = Field(
        None,
        description="The model's task (GET /v1/models lists them); jina-embeddings-v3: retrieval.query | "
        "retrieval.passage | separation | classification | text-matching | none",
        json_schema_extra=_TASK_EXAMPLES,
    )
    dimensions: StrictInt | None = Field(None, ge=1, description="Matryoshka truncation, then normalisation (up to the model's width).")
    normalized: StrictBool = Field(True, description="L2-normalise after truncation.")
    embedding_type: EmbeddingTypes | None = Field(
        None, description="float (default) | base64 | binary | ubinary, or a list of them."
    )

    @field_validator("input", mode="before")
    @classmethod
    def _check_input(cls, v: Any) -> Any:
        v = _unwrap_text(v, "input")
        if not isinstance(v, str):
            raise ValueError(
                'input must be one text (a string or {"text": ...}): the document to cut into chunks; '
                f"got {quote_value(v)}"
            )
        if not v.strip():
            raise ValueError("input must contain text")
        return v


    @field_validator("embedding_type", mode="before")
    @classmethod
    def _check_types(cls, v: Any) -> Any:
        return _check_embedding_types(v, "embedding_type")

    def to_spec(self) -> EmbeddingSpec:
        c = self.chunking
        if isinstance(c, TokenChunking) and c.overlap >= c.size:
            raise InvalidRequestError("chunking.overlap must be smaller than chunking.size", param="chunking.overlap")
        rule = ChunkingRule("tokens", c.size, c.overlap) if isinstance(c, TokenChunking) else ChunkingRule("sentences", c.size)
        text = self.input if isinstance(self.input, str) else self.input.text
        return EmbeddingSpec(
            model=self.model,
            inputs=(text,),
            has_token_ids=False,
            task=task_of_key(self.task),
            task_given=self.task is not None,
            dimensions=self.dimensions,
            normalized=self.normalized,
            truncate=False,
            output=_output_format(set(), "float", self.embedding_type, None),
            late_chunking=True,
            chunking=rule,
        )


Embedding = list[float] | str | list[int] | dict[str, list[float] | str | list[int]]


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Embedding


class SparseEmbedding(BaseModel):
    """Sparse weights of one input: vocabulary ids (ascending) and their weights."""

    indices: list[int]
    values: list[float]


class SparseEmbeddingData(EmbeddingData):
    """An embedding with its sparse weights too (``return_sparse``)."""

    sparse_embedding: SparseEmbedding


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


class ChunkData(BaseModel):
    object: Literal["chunk"] = "chunk"
    index: int
    #: the chunk's text: ``input[start:end]`` (Unicode code points)
    text: str
    start: int
    end: int
    embedding: Embedding


class ChunkEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[ChunkData]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    """A name a request may send as ``model``: an alias (a model and task) or a model id."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "embed-gateway"
    task: str | None = None
    dimensions: int | None = None
    #: the model it serves (its id)
    model: str | None = None
    #: every task the model serves (its own names; "none" = no task)
    tasks: list[str] | None = None
    #: the model's full dense width
    max_dimensions: int | None = None
    #: whether ``dimensions`` below the full width is allowed (Matryoshka-trained)
    matryoshka: bool | None = None
    #: dense, sparse, multivector
    outputs: list[str] | None = None
    #: the size of the model's vocabulary: the width of its sparse vectors (their indices are below it),
    #: e.g. what a pgvector ``sparsevec(n)`` column needs
    vocab_size: int | None = None
    #: the vector space of this name's vectors (its task and dimensions, normalised): what
    #: ``x-embed-space`` says and ``x-embed-expect-space`` pins
    space: str | None = None
    #: the model's spaces: task -> dimensions -> space id (normalised vectors; full width, and the
    #: name's own dimensions)
    spaces: dict[str, dict[str, str]] | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]

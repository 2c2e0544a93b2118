"""Wire schemas of Text Embeddings Inference's API (TEI 1.9: router/src/http/types.rs).

A dialect of its own beside OpenAI's and Jina's (:mod:`gateway.api.openai.protocol`): TEI has its
own names (``inputs``, ``normalize``, ``prompt_name``), defaults (``truncate`` from the server's
``api.auto_truncate``) and error body. As there, requests turn themselves into internal specs at
the boundary and nothing further sees them.

TEI's semantics kept: unknown fields are ignored (TEI's serde structs accept them), a single input
comes back as one row, and an empty input of any kind is TEI's ``Empty`` error (400), told apart
from other validation errors (422) by its pydantic error type :data:`EMPTY`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictBool, StrictInt, StrictStr, field_validator
from pydantic_core import PydanticCustomError

from gateway.contract import DENSE, NO_TASK, SPARSE, TASKS, Output, TokenIds, TruncationDirection, task_of_key
from gateway.serving.spec import EmbeddingSpec

__all__ = [
    "EMPTY",
    "TeiDecodeRequest",
    "TeiDecodeResponse",
    "TeiEmbedAllRequest",
    "TeiEmbedAllResponse",
    "TeiEmbedRequest",
    "TeiEmbedResponse",
    "TeiEmbedSparseRequest",
    "TeiEmbedSparseResponse",
    "TeiErrorResponse",
    "TeiErrorType",
    "TeiSimpleToken",
    "TeiTokenizeRequest",
    "TeiTokenizeResponse",
]

#: the pydantic error type of an empty input: rendered as TEI's ``Empty`` (400), not ``Validation``
EMPTY = "tei_empty"

TeiErrorType = Literal["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty", "Unauthorized"]

TokenId = Annotated[StrictInt, Field(ge=0)]
#: one text, one token-id list, or a batch of either (TEI's ``Input``)
TeiInput = Annotated[StrictStr, Field(min_length=1)] | list[TokenId] | list[Annotated[StrictStr, Field(min_length=1)] | list[TokenId]]
_PROMPT_NAMES: dict[str, Any] = {"examples": [t.value for t in TASKS]}


def _empty(what: str) -> PydanticCustomError:
    return PydanticCustomError(EMPTY, "{what} cannot be empty", {"what": what})


def _check_inputs(v: Any) -> Any:
    """TEI's ``Empty``: an empty string, an empty batch, or an empty token-id list anywhere."""
    if v == "" or v == []:
        raise _empty("`inputs`")
    if isinstance(v, list):
        for item in v:
            if item == "" or item == []:
                raise _empty("`inputs`")
    return v


def _parse_prompt_name(v: str | None) -> str | None:
    """TEI's ``prompt_name`` is the model's task (its prompt); the service checks it against the
    model's tasks (a 4xx naming them). No prompt is no ``prompt_name``, not a name."""
    if v == NO_TASK:
        raise ValueError(f"{v!r} is not a prompt name; leave prompt_name out to embed without a prompt")
    return task_of_key(v)


def _direction(v: str) -> TruncationDirection:
    return "left" if v.lower() == "left" else "right"


def _as_inputs(raw: Any) -> tuple[tuple[str | TokenIds, ...], bool]:
    """The validated ``inputs`` as a tuple of texts / id tuples, and whether any are ids."""
    if isinstance(raw, str):
        return (raw,), False
    if all(isinstance(x, int) for x in raw):
        return (tuple(raw),), True
    items = tuple(x if isinstance(x, str) else tuple(x) for x in raw)
    return items, any(not isinstance(x, str) for x in items)


class _InputsAndPrompt(BaseModel):
    """The checks every TEI request with ``inputs`` and ``prompt_name`` makes (TEI ignores unknown fields)."""

    model_config = ConfigDict(extra="ignore")

    @field_validator("inputs", mode="before", check_fields=False)
    @classmethod
    def _check_inputs(cls, v: Any) -> Any:
        return _check_inputs(v)

    @field_validator("prompt_name", check_fields=False)
    @classmethod
    def _check_prompt_name(cls, v: str | None) -> str | None:
        _parse_prompt_name(v)
        return v


class _TeiRequest(_InputsAndPrompt):
    inputs: TeiInput = Field(
        description="A text, a list of texts, or token ids of this model's XLM-R tokenizer (a list, or a list of "
        "lists; refused unless api.token_ids: accept — see docs/api.md). A single input comes back as one row."
    )
    truncate: StrictBool | None = Field(
        None, description="Cut over-long inputs instead of a 422; unset = the server's api.auto_truncate (TEI's)."
    )
    truncation_direction: Literal["Right", "Left", "right", "left"] = Field(
        "Right", description="Which end truncation drops: Right keeps the start (the reference's), Left keeps the end."
    )
    prompt_name: StrictStr | None = Field(
        None,
        description="The task adapter (and its instruction, as the model's sentence-transformers prompts): "
        "retrieval.query | retrieval.passage | separation | classification | text-matching; unset = the "
        "default alias's task.",
        json_schema_extra=_PROMPT_NAMES,
    )

    def _spec(
        self, *, auto_truncate: bool, normalized: bool, dimensions: int | None, tokens: bool,
        outputs: frozenset[Output] = frozenset({DENSE}),
    ) -> EmbeddingSpec:
        inputs, ids = _as_inputs(self.inputs)
        return EmbeddingSpec(
            model=None,
            inputs=inputs,
            has_token_ids=ids,
            task=_parse_prompt_name(self.prompt_name),
            task_given=self.prompt_name is not None,
            dimensions=dimensions,
            normalized=normalized,
            truncate=auto_truncate if self.truncate is None else self.truncate,
            truncation_direction=_direction(self.truncation_direction),
            token_embeddings=tokens,
            outputs=outputs,
        )


class TeiEmbedRequest(_TeiRequest):
    """``POST /embed`` (also ``POST /`` and ``/invocations``)."""

    normalize: StrictBool = Field(True, description="L2-normalise (after the Matryoshka truncation).")
    dimensions: StrictInt | None = Field(
        None, ge=1, description="Matryoshka: keep the first N dimensions, then normalise; over the model's is a 422."
    )

    def to_spec(self, *, auto_truncate: bool) -> EmbeddingSpec:
        return self._spec(auto_truncate=auto_truncate, normalized=self.normalize, dimensions=self.dimensions, tokens=False)


class TeiEmbedAllRequest(_TeiRequest):
    """``POST /embed_all``: every token's last hidden state (``<s>``, instruction and ``</s>`` included)."""

    def to_spec(self, *, auto_truncate: bool) -> EmbeddingSpec:
        return self._spec(auto_truncate=auto_truncate, normalized=False, dimensions=None, tokens=True)


class TeiEmbedSparseRequest(_TeiRequest):
    """``POST /embed_sparse``: each input's sparse (lexical) weights, for models with a sparse output."""

    def to_spec(self, *, auto_truncate: bool) -> EmbeddingSpec:
        return self._spec(auto_truncate=auto_truncate, normalized=True, dimensions=None, tokens=False,
                          outputs=frozenset({DENSE, SPARSE}))


class TeiSparseValue(BaseModel):
    index: int
    value: float


#: ``/embed_sparse``'s answer: per input, its (id, weight) pairs
TeiEmbedSparseResponse = list[list[TeiSparseValue]]


class TeiTokenizeRequest(_InputsAndPrompt):
    """``POST /tokenize``."""

    inputs: Annotated[StrictStr, Field(min_length=1)] | list[Annotated[StrictStr, Field(min_length=1)]] = Field(
        description="A text or a list of texts."
    )
    add_special_tokens: StrictBool = Field(True, description="Include <s> and </s> (no offsets: start/stop null).")
    prompt_name: StrictStr | None = Field(
        None, description="A task: its instruction is tokenised before the text.", json_schema_extra=_PROMPT_NAMES
    )

    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)

    def task(self) -> str | None:
        return _parse_prompt_name(self.prompt_name)


class TeiDecodeRequest(BaseModel):
    """``POST /decode``."""

    model_config = ConfigDict(extra="ignore")

    ids: list[TokenId] | list[list[TokenId]] = Field(description="One token-id list, or a list of them.")
    skip_special_tokens: StrictBool = Field(True, description="Leave <s>, </s>, <pad> out of the text.")

    @field_validator("ids", mode="before")
    @classmethod
    def _check_ids(cls, v: Any) -> Any:
        if v == [] or (isinstance(v, list) and any(x == [] for x in v)):
            raise _empty("`ids`")
        return v

    def sequences(self) -> list[list[int]]:
        ids: list[Any] = self.ids
        return [ids] if all(isinstance(x, int) for x in ids) else ids


class TeiSimpleToken(BaseModel):
    id: int
    #: the source text of the token (its UTF-8 bytes ``start:stop``), or the special token itself
    text: str
    special: bool
    #: UTF-8 BYTE offsets into the tokenised string (instruction + input); null for special tokens
    start: int | None
    stop: int | None


TeiEmbedResponse = RootModel[list[list[float]]]
TeiEmbedAllResponse = RootModel[list[list[list[float]]]]
TeiTokenizeResponse = RootModel[list[list[TeiSimpleToken]]]
TeiDecodeResponse = RootModel[list[str]]


class TeiErrorResponse(BaseModel):
    """TEI's error body (``{"error": "...", "error_type": "Validation"}``), on the TEI routes only."""

    error: str
    error_type: TeiErrorType

"""Wire schemas: the OpenAI embeddings API plus this model's extensions, in one module.

Request bodies convert themselves into internal specs at the boundary (:meth:`to_spec`); no
pydantic wire object travels further than the route.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from gateway.contract import Task, TokenIds, parse_task

__all__ = [
    "EmbeddingData",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "EmbeddingSpec",
    "ErrorBody",
    "ErrorResponse",
    "ModelCard",
    "ModelList",
    "Usage",
]

InputType = StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]


@dataclass(frozen=True, slots=True)
class EmbeddingSpec:
    """A validated request, in internal terms (alias not yet resolved)."""

    model: str | None
    inputs: tuple[str | TokenIds, ...]
    has_token_ids: bool
    task: Task | None
    task_given: bool
    dimensions: int | None
    normalized: bool
    truncate: bool
    encoding_format: Literal["float", "base64"]


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings`` (OpenAI's schema; ``task``, ``normalized``, ``truncate`` are ours)."""

    model_config = ConfigDict(extra="forbid")

    input: InputType = Field(
        description="Text, list of texts, or token ids of this model's XLM-R tokenizer (see docs/api.md)."
    )
    model: StrictStr | None = Field(None, description="A model alias (GET /v1/models); it may imply a task.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64 = little-endian float32 bytes (the OpenAI SDK's default)."
    )
    dimensions: StrictInt | None = Field(None, ge=1, le=1024, description="Matryoshka truncation, then normalisation.")
    user: StrictStr | None = Field(None, description="Accepted for compatibility; not used.")
    task: StrictStr | None = Field(
        None,
        description="retrieval.query | retrieval.passage | separation | classification | text-matching | none",
    )
    normalized: StrictBool = Field(True, description="L2-normalise after truncation.")
    truncate: StrictBool = Field(False, description="Drop the tail of over-long inputs instead of a 400.")

    @field_validator("input", mode="before")
    @classmethod
    def _check_input(cls, v: Any) -> Any:
        if isinstance(v, str):
            if not v:
                raise ValueError("input must not be an empty string")
            return v
        if not isinstance(v, list):
            raise ValueError("input must be a string, a list of strings, or token ids")
        if not v:
            raise ValueError("input must not be an empty list")
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
                if not all(isinstance(x, int) and not isinstance(x, bool) for x in ids):
                    raise ValueError(f"input[{i}] must be a list of integer token ids")
            return v
        raise ValueError("input must be a string, a list of strings, a list of token ids, or a list of such lists")

    @field_validator("task")
    @classmethod
    def _check_task(cls, v: str | None) -> str | None:
        parse_task(v)
        return v

    def to_spec(self) -> EmbeddingSpec:
        raw = self.input
        inputs: tuple[str | TokenIds, ...]
        if isinstance(raw, str):
            inputs, ids = (raw,), False
        elif isinstance(raw[0], str):
            inputs, ids = tuple(raw), False  # type: ignore[arg-type]
        elif isinstance(raw[0], int):
            inputs, ids = (tuple(raw),), True  # type: ignore[arg-type]
        else:
            inputs, ids = tuple(tuple(x) for x in raw), True  # type: ignore[union-attr]
        return EmbeddingSpec(
            model=self.model,
            inputs=inputs,
            has_token_ids=ids,
            task=parse_task(self.task),
            task_given=self.task is not None,
            dimensions=self.dimensions,
            normalized=self.normalized,
            truncate=self.truncate,
            encoding_format=self.encoding_format,
        )


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "embed-gateway"
    task: str | None = None
    dimensions: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody

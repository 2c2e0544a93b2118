"""Settings of the ``sentence-transformers`` in-process kind (one ``engines.<name>`` section).

Pydantic only: the gateway composes this model into its configuration without importing torch.
Every key beyond :class:`~engine_hf.settings.InProcessSettings` is documented in
docs/models.md ("sentence-transformers checkpoints").
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from engine_hf.settings import InProcessSettings

__all__ = ["SentenceTransformersSettings"]


class SentenceTransformersSettings(InProcessSettings):
    """Any checkpoint in sentence-transformers' format (``modules.json``: Transformer -> Pooling ->
    optional Dense -> optional Normalize), served as ``SentenceTransformer(model).encode`` would,
    without sentence-transformers and without executing code from the checkpoint."""

    kind: Literal["sentence-transformers"] = "sentence-transformers"
    #: hub id or local directory of the checkpoint (required: there is no default model)
    model: str
    #: whether a prefix of the vector is a valid smaller embedding (the model was trained with a
    #: Matryoshka loss): only then may clients ask for fewer ``dimensions``. Checkpoints do not
    #: record it, so it is the operator's statement
    matryoshka: bool = False
    #: prompts added to (or replacing) the checkpoint's ``config_sentence_transformers.json``
    #: ``prompts``, as ``SentenceTransformer(prompts=...)`` does: name -> text prepended to inputs
    prompts: dict[str, str] = Field(default_factory=dict)
    #: the prompt used when a request names no task; null = the checkpoint's ``default_prompt_name``
    default_prompt_name: str | None = None

    @field_validator("prompts")
    @classmethod
    def _names(cls, prompts: dict[str, str]) -> dict[str, str]:
        for name in prompts:
            if not name or name != name.strip():
                raise ValueError(f"prompt name {name!r} must be non-empty, without surrounding spaces")
        return prompts

"""One typed settings object, loaded once.

Sources, highest first: values passed to :func:`load_settings` > environment variables
``EMBED_GATEWAY_…`` (nested keys joined by ``__``, e.g. ``EMBED_GATEWAY_ENGINES__HF__MODEL``) > the
YAML file (``--config``) > the defaults below. Every key is documented in docs/configuration.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from gateway.contract import Task, parse_task

__all__ = [
    "AliasSettings",
    "ApiSettings",
    "EnginesSettings",
    "HFEngineSettings",
    "LimitsSettings",
    "ServerSettings",
    "Settings",
    "load_settings",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class HFEngineSettings(_Section):
    enabled: bool = True
    #: hub id or local directory, either published layout
    model: str = "jinaai/jina-embeddings-v3"
    revision: str | None = None
    cache_dir: str | None = None
    #: never touch the network for the model (same as HF_HUB_OFFLINE=1 for this engine)
    local_files_only: bool = False
    device: str = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    #: torch intra-op threads on CPU; null = torch's default (all cores)
    threads: int | None = Field(None, ge=1)
    #: rowwise: base weights + per-row LoRA (mixed-task batches, least memory);
    #: merged: also keep a pre-merged copy of every adapted weight per task (fastest single-task batches)
    adapter_mode: Literal["rowwise", "merged"] = "rowwise"
    #: packed: a batch's sequences in one row, attention per sequence, no padding (best on CPU);
    #: padded: pad to the longest and mask (best for GPU kernels); auto: packed on CPU, padded on CUDA
    attention: Literal["auto", "packed", "padded"] = "auto"
    #: torch.compile the model: off | default | reduce-overhead (CUDA graphs) | max-autotune.
    #: Pays a compile on start-up and on new shapes; meant for GPUs with padded attention.
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = "off"
    max_batch_tokens: int = Field(16384, ge=16)
    max_batch_requests: int = Field(64, ge=1)
    #: admission bound: tokens waiting in the queue before new work is refused (429)
    max_queued_tokens: int = Field(262144, ge=16)
    max_input_tokens: int = Field(8192, ge=8)
    #: late chunking: tokens per forward pass for documents longer than one pass; null = max_input_tokens
    late_chunking_window_tokens: int | None = Field(None, ge=8)
    #: late chunking: tokens of left context each window after the first re-reads (their outputs
    #: are dropped); null = window // 16 (512 for the default 8192-token window)
    late_chunking_overlap_tokens: int | None = Field(None, ge=0)
    #: late chunking: most tokens one document (instruction and special tokens included) may have
    max_late_chunking_tokens: int = Field(65536, ge=8)

    @model_validator(mode="after")
    def _check_windows(self) -> HFEngineSettings:
        window, overlap = self.late_chunking_windows()
        if window > self.max_input_tokens:
            raise ValueError(
                f"late_chunking_window_tokens ({window}) exceeds max_input_tokens ({self.max_input_tokens})"
            )
        if overlap * 2 > window:
            raise ValueError(
                f"late_chunking_overlap_tokens ({overlap}) must be at most half the window ({window} tokens)"
            )
        return self

    def late_chunking_windows(self) -> tuple[int, int]:
        """``(window, overlap)`` in tokens, defaults resolved."""
        window = self.late_chunking_window_tokens or self.max_input_tokens
        overlap = self.late_chunking_overlap_tokens
        return window, window // 16 if overlap is None else overlap


class EnginesSettings(_Section):
    hf: HFEngineSettings = HFEngineSettings()


class AliasSettings(_Section):
    """What a ``model`` name means: a task (null = no task, base weights) and default dimensions."""

    task: Task | None = Task.TEXT_MATCHING
    dimensions: int | None = Field(None, ge=1)

    @field_validator("task", mode="before")
    @classmethod
    def _task(cls, v: Any) -> Task | None:
        return v if isinstance(v, Task) else parse_task(v)


def _default_aliases() -> dict[str, AliasSettings]:
    return {
        # Mem0 stores short facts and compares statements with statements: symmetric similarity.
        "jina-embeddings-v3": AliasSettings(task=Task.TEXT_MATCHING),
        "jina-embeddings-v3-query": AliasSettings(task=Task.RETRIEVAL_QUERY),
        "jina-embeddings-v3-passage": AliasSettings(task=Task.RETRIEVAL_PASSAGE),
        "jina-embeddings-v3-separation": AliasSettings(task=Task.SEPARATION),
        "jina-embeddings-v3-classification": AliasSettings(task=Task.CLASSIFICATION),
        "jina-embeddings-v3-text-matching": AliasSettings(task=Task.TEXT_MATCHING),
        "jina-embeddings-v3-base": AliasSettings(task=None),
    }


class ApiSettings(_Section):
    #: what a model-less request gets
    default_model: str = "jina-embeddings-v3"
    #: token-id inputs: "reject" (400 telling the client to send text) or "accept" (ids must be
    #: XLM-R ids of this model's tokenizer; OpenAI tiktoken ids would embed as garbage)
    token_ids: Literal["reject", "accept"] = "reject"


class LimitsSettings(_Section):
    max_inputs_per_request: int = Field(2048, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EMBED_GATEWAY_",
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    server: ServerSettings = ServerSettings()
    engines: EnginesSettings = EnginesSettings()
    aliases: dict[str, AliasSettings] = Field(default_factory=_default_aliases)
    api: ApiSettings = ApiSettings()
    limits: LimitsSettings = LimitsSettings()

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.api.default_model not in self.aliases:
            raise ValueError(f"api.default_model {self.api.default_model!r} is not one of aliases")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = settings_cls.model_config.get("yaml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings once: ``overrides`` > env > ``config_file`` (YAML) > defaults."""
    if config_file is None:
        return Settings(**overrides)
    path = Path(config_file)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    bound = type("FileSettings", (Settings,), {"model_config": {**Settings.model_config, "yaml_file": path}})
    return bound(**overrides)  # type: ignore[no-any-return]

"""One typed settings object, loaded once.

Sources, highest first: values passed to :func:`load_settings` > environment variables
``EMBED_GATEWAY_…`` (nested keys joined by ``__``, e.g. ``EMBED_GATEWAY_ENGINES__HF__MODEL``) > the
YAML file (``--config``) > the defaults below (each engine's in its own ``settings`` module). Every key is documented in docs/configuration.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from engine_hf.settings import HFEngineSettings
from engine_vllm.settings import ManagedVLLMSettings, VLLMEngineSettings
from gateway.contract import ROUTE_KEYS, Task, parse_task, task_of_key
from gateway.kinds import parse_engine

__all__ = [
    "AliasSettings",
    "ApiSettings",
    "AuthSettings",
    "BreakerSettings",
    "CacheSettings",
    "CorsSettings",
    "EnginesSettings",
    "HFEngineSettings",
    "LimitsSettings",
    "ManagedVLLMSettings",
    "ModelParitySettings",
    "ModelSettings",
    "ParitySettings",
    "RetrySettings",
    "ServerSettings",
    "ShadowSettings",
    "Settings",
    "VLLMEngineSettings",
    "load_settings",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CorsSettings(_Section):
    """Cross-origin requests from browsers. Off (no CORS headers at all) while ``allow_origins`` is empty."""

    #: origins allowed to call the API from a browser, e.g. ["https://app.example.com"]; ["*"] = any
    allow_origins: list[str] = Field(default_factory=list)
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST"])
    allow_headers: list[str] = Field(default_factory=lambda: ["authorization", "content-type", "x-request-id"])
    #: send cookies / the Authorization header cross-origin (not together with allow_origins ["*"])
    allow_credentials: bool = False
    #: seconds a browser may cache a preflight answer
    max_age: int = Field(600, ge=0)

    @model_validator(mode="after")
    def _check(self) -> CorsSettings:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("server.cors: allow_credentials needs explicit allow_origins, not \"*\"")
        return self


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: json: one JSON object per line (for log shippers); text: human-readable lines;
    #: auto: text when stderr is a terminal (a person reading), JSON otherwise (a container, a pipe, a file)
    log_format: Literal["auto", "json", "text"] = "auto"
    #: debug only: put request texts in the request log (they are users' memories; off by default)
    log_request_texts: bool = False
    #: SIGTERM: stop accepting, let in-flight requests finish for this many seconds, then fail what is
    #: left with 503 and close the engines
    shutdown_grace: float = Field(30.0, ge=0)
    #: how long an idle client connection is kept open. Longer than any client's or proxy's idle
    #: timeout (60 s on common load balancers), so a client never reuses a connection the server is
    #: closing at that moment (the request would fail with a connection reset)
    keep_alive: float = Field(75.0, gt=0)
    cors: CorsSettings = CorsSettings()


class EnginesSettings(_Section):
    """Each engine's own settings model (it lives with its engine; re-exported here)."""

    hf: HFEngineSettings = HFEngineSettings()
    vllm: VLLMEngineSettings = VLLMEngineSettings()


class ShadowSettings(_Section):
    """Live A/B: a sample of the requests a model (or alias) serves is also embedded by a candidate,
    in the background, and the two models' neighbourhoods are compared (docs/ab-testing.md).

    The primary's response never waits for, fails with or changes because of the candidate: the
    sample goes into a bounded queue (dropped and counted when it is full) that ``concurrency``
    workers drain, a budget of its own."""

    #: the candidate: a model id or an alias (an alias's task is the candidate's task)
    model: str
    #: share of the primary's requests also sent to the candidate (0..1)
    fraction: float = Field(0.1, ge=0.0, le=1.0)
    #: requests waiting for the candidate at most; a sampled request beyond it is dropped (counted)
    queue: int = Field(64, ge=1)
    #: candidate requests in flight at most
    concurrency: int = Field(1, ge=1)
    #: texts per candidate request at most: sampled requests waiting together go in one request
    batch: int = Field(64, ge=1)
    #: recently shadowed texts the agreement is computed over (per task and width)
    window: int = Field(256, ge=12)
    #: neighbours compared per text
    neighbours: int = Field(10, ge=1)


class AliasSettings(_Section):
    """What a ``model`` name means: a model, a task (null = no task: base weights, no prompt) and
    default dimensions.

    ``model``: the model the alias serves; null = the model it is declared under (top-level
    ``aliases`` belong to the default jina-embeddings-v3 model, whose tasks are the well-known five)."""

    model: str | None = None
    task: str | None = Task.TEXT_MATCHING
    dimensions: int | None = Field(None, ge=1)
    #: live A/B of this alias's requests against a candidate (overrides its model's ``shadow``)
    shadow: ShadowSettings | None = None

    @field_validator("task", mode="after")
    @classmethod
    def _task(cls, v: str | None) -> str | None:
        return task_of_key(v)


class ModelParitySettings(_Section):
    """Which engine of a model is right: the others are compared with it, never across models."""

    #: an engine of this model; null = its first in-process engine (none: its engines are not compared)
    reference: str | None = None


class ModelSettings(_Section):
    """One model behind the gateway: the engines that serve it, its routes, aliases and parity reference.

    Its tasks are the union of what its engines declare (their own vocabulary). A model without
    ``engines`` is the jina-embeddings-v3 model of the top-level ``engines``, ``routes``,
    ``aliases`` and ``parity`` (how every configuration before models worked)."""

    #: the model a request without ``model`` gets (instead of ``api.default_model``)
    default: bool = False
    #: the task of a request that names this model (not an alias) and no task; null = no task
    task: str | None = None
    #: engine name -> ``{kind: ..., ...its settings}``; names are unique across models
    engines: dict[str, Any] = Field(default_factory=dict)
    #: task (or "none") -> engines to try, in order; tasks not listed: every engine that serves them
    routes: dict[str, list[str]] = Field(default_factory=dict)
    #: alias -> task and default dimensions of this model (``model`` may stay unset)
    aliases: dict[str, AliasSettings] = Field(default_factory=dict)
    parity: ModelParitySettings = ModelParitySettings()
    #: live A/B of this model's requests against a candidate model (docs/ab-testing.md)
    shadow: ShadowSettings | None = None

    @field_validator("task", mode="after")
    @classmethod
    def _task(cls, v: str | None) -> str | None:
        return task_of_key(v)

    @field_validator("engines", mode="before")
    @classmethod
    def _engines(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        return {name: parse_engine(name, raw) for name, raw in v.items()}

    @field_validator("routes")
    @classmethod
    def _routes(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, names in v.items():
            if not names:
                raise ValueError(f"routes.{key} is empty; list at least one engine or remove the key")
            if len(set(names)) != len(names):
                raise ValueError(f"routes.{key} names an engine twice: {names}")
        return v


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
    #: TEI routes (/embed, /embed_all): what a request without ``truncate`` gets, like TEI's
    #: ``--auto-truncate`` (on by default since TEI 1.9): true = drop the tail, false = a 422
    auto_truncate: bool = True


class LimitsSettings(_Section):
    """Per-request limits (defaults: OpenAI's where it has one, TEI's where it does not).

    Each violation is a 4xx that names the limit and the offending value."""

    #: OpenAI's limit (TEI's default is 32)
    max_inputs_per_request: int = Field(2048, ge=1)
    #: OpenAI's 300k tokens per request, instruction and special tokens included; null = no limit
    max_tokens_per_request: int | None = Field(300_000, ge=1)
    #: request body size (413 beyond). TEI's is 2 MB; 4 MiB fits a 300k-token request even when
    #: the client escapes non-ASCII text as \uXXXX (Python's json does)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    #: embedding requests being served at once (TEI's default); more get 429 with Retry-After at once
    max_concurrent_requests: int = Field(512, ge=1)
    #: seconds a request may take end to end: then 504 with Retry-After and its queued work is
    #: dropped; null = no deadline. 600 = the OpenAI SDK's own client timeout
    request_timeout: float | None = Field(600.0, gt=0)


class RetrySettings(_Section):
    """One retry policy: used only on the last engine a request can go to (otherwise it falls over at once)."""

    #: tries of that engine in total (1 = no retry)
    attempts: int = Field(3, ge=1)
    #: first wait; doubles per retry up to ``max_backoff`` (an engine's Retry-After is honoured up to that cap)
    initial_backoff: float = Field(0.1, ge=0)
    max_backoff: float = Field(2.0, ge=0)


class BreakerSettings(_Section):
    """Circuit breaker per engine: out after repeated retryable failures, probed back in."""

    #: consecutive retryable failures that take an engine out of its routes
    failure_threshold: int = Field(3, ge=1)
    #: seconds between health probes of every engine (and re-checks of engines that are out)
    probe_interval: float = Field(5.0, gt=0)


class ParitySettings(_Section):
    """Cross-engine parity guard: engines must return the reference engine's vectors."""

    enabled: bool = True
    #: the engine whose vectors are right (the exact in-process engine)
    reference: str = "hf"
    #: mean cosine over the probe set below this takes the engine out (see docs/configuration.md per dtype)
    threshold: float = Field(0.999, gt=0, le=1)
    #: mean |norm / reference norm - 1| of the un-normalised vectors above this takes the engine out
    max_norm_deviation: float = Field(0.01, ge=0)
    #: seconds between re-checks of engines that passed
    interval: float = Field(300.0, gt=0)


class AuthSettings(_Section):
    """Bearer keys. With none configured the API is open (only /admin needs a key)."""

    #: client keys: when any is set (here or in ``api_keys_file``), every route but the open ones
    #: (see :meth:`open_paths`) needs one
    api_keys: list[SecretStr] = Field(default_factory=list)
    #: a file with one client key per line (blank lines and lines starting with # ignored); read at
    #: start-up and on every reload, so keys rotate without a restart
    api_keys_file: str | None = None
    #: bearer key of the /admin endpoints; null (or empty) = admin endpoints refuse every call
    admin_key: SecretStr | None = None
    #: /health and /ready answer without a key (a kubelet or load-balancer probe sends none);
    #: a caller without a valid key gets only /ready's status, not its per-engine detail
    probes_open: bool = True
    #: /metrics answers without a key (for a Prometheus that cannot send one; it shows engine
    #: names, tasks and traffic, so it is closed by default)
    metrics_open: bool = False
    _file_keys: tuple[SecretStr, ...] = PrivateAttr(default=())

    @field_validator("admin_key")
    @classmethod
    def _empty_is_none(cls, v: SecretStr | None) -> SecretStr | None:
        # `EMBED_GATEWAY_AUTH__ADMIN_KEY=` (an unset compose variable) must not mean "the empty key"
        return v if v is not None and v.get_secret_value().strip() else None

    @field_validator("api_keys")
    @classmethod
    def _no_empty_keys(cls, v: list[SecretStr]) -> list[SecretStr]:
        # an empty key would let "Authorization: Bearer " in: refuse the configuration instead
        if any(not k.get_secret_value().strip() for k in v):
            raise ValueError("auth.api_keys contains an empty key")
        return v

    @model_validator(mode="after")
    def _read_file(self) -> AuthSettings:
        if self.api_keys_file:
            path = Path(self.api_keys_file)
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ValueError(f"auth.api_keys_file cannot be read ({type(exc).__name__})") from None
            keys = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
            if not keys:
                raise ValueError("auth.api_keys_file holds no key (one per line)")
            self._file_keys = tuple(SecretStr(k) for k in keys)
        return self

    def client_keys(self) -> tuple[SecretStr, ...]:
        """Every client key: ``api_keys`` and the file's."""
        return (*self.api_keys, *self._file_keys)

    def open_paths(self) -> frozenset[str]:
        """Routes that never need a client key, whatever keys are configured (asked on every request:
        a lookup, nothing built)."""
        return _OPEN_PATHS[(self.probes_open, self.metrics_open)]


#: (probes_open, metrics_open) -> the routes open without a key
_OPEN_PATHS = {
    (probes, metrics): frozenset((["/health", "/ready"] if probes else []) + (["/metrics"] if metrics else []))
    for probes in (False, True)
    for metrics in (False, True)
}


class CacheSettings(_Section):
    """The embedding cache in front of the engines (docs/cache.md). Read at start-up only."""

    #: in-process LRU tier, bounded in bytes of vectors held; 0 = off
    memory_bytes: int = Field(256 * 1024 * 1024, ge=0)
    #: shared tier, e.g. redis://127.0.0.1:6379/0 (replicas and processes share it); null = off
    redis_url: str | None = None
    #: seconds a Redis entry lives; null = until Redis evicts it (its maxmemory policy)
    ttl: int | None = Field(7 * 24 * 3600, ge=1)
    #: per Redis call: past it the request is served from the engines (and the error counted)
    redis_timeout: float = Field(0.25, gt=0)
    #: after a Redis error, the cache skips Redis this long (no request waits on a dead server)
    redis_retry_interval: float = Field(5.0, ge=0)
    #: prefix of every Redis key (a flush deletes only keys under it)
    key_prefix: str = Field("embed-gateway:", min_length=1)


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
    #: task (or "none") -> engines to try, in order; tasks not listed get the built-in default
    #: (gateway.serving.routing.default_route). Listed tasks are strict: see gateway.serving.routing.resolve_routes.
    routes: dict[str, list[str]] = Field(default_factory=dict)
    retry: RetrySettings = RetrySettings()
    breaker: BreakerSettings = BreakerSettings()
    parity: ParitySettings = ParitySettings()
    auth: AuthSettings = AuthSettings()
    cache: CacheSettings = CacheSettings()
    #: model id -> its engines, routes, aliases (docs/models.md); empty = the one jina-embeddings-v3
    #: model of ``engines``, ``routes`` and ``aliases``
    models: dict[str, ModelSettings] = Field(default_factory=dict)

    @field_validator("routes")
    @classmethod
    def _routes(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, names in v.items():
            if key not in ROUTE_KEYS:
                raise ValueError(f"routes: unknown task {key!r}; valid keys: {', '.join(sorted(ROUTE_KEYS))}")
            if not names:
                raise ValueError(f"routes.{key} is empty; list at least one engine or remove the key")
            if len(set(names)) != len(names):
                raise ValueError(f"routes.{key} names an engine twice: {names}")
        return v

    @field_validator("aliases")
    @classmethod
    def _legacy_alias_tasks(cls, v: dict[str, AliasSettings]) -> dict[str, AliasSettings]:
        for alias in v.values():
            if alias.model is None and alias.task is not None:
                parse_task(alias.task)  # the jina-embeddings-v3 model's tasks: the well-known five
        return v

    @model_validator(mode="after")
    def _check(self) -> Settings:
        from gateway.catalog import build_catalog  # the catalog reads these settings

        catalog = build_catalog(self)  # conflicting names, a missing default: refused at load
        if self.api.default_model not in catalog.names:
            raise ValueError(f"api.default_model {self.api.default_model!r} is not one of the aliases or models")
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

"""The model catalog: which models the gateway serves, the engines of each, and what every
``model`` name a request may send means.

Pure data derived once from the settings (at load, on reload): nothing here builds or calls an
engine. Why one place: a request's ``model`` is an alias or a model id, an engine belongs to
exactly one model, and the default model is one fact; the config check, the pool, the router and
``/v1/models`` all read the same answer.

Every configuration written before models existed keeps its meaning: without ``models`` (or for
a model without ``engines``) the top-level ``engines.hf``/``engines.vllm``, ``routes``,
``aliases`` and ``parity.reference`` are the jina-embeddings-v3 model's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from pydantic import BaseModel

from gateway.kinds import engine_kind

if TYPE_CHECKING:
    from gateway.config import Settings, ShadowSettings

__all__ = ["LEGACY_MODEL", "Catalog", "ModelEntry", "Resolved", "build_catalog"]

#: the id of the model the top-level engines serve
LEGACY_MODEL = "jina-embeddings-v3"

#: kinds that run in this process: a model's parity reference defaults to the first of them
_IN_PROCESS = ("hf", "sentence-transformers", "bge-m3")
#: kinds with no task vocabulary of their own: without ``tasks`` they serve what their routes send them
_REMOTE = ("vllm", "openai")


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a request's ``model`` name means."""

    #: the name as the request gave it (what the response echoes)
    name: str
    model: str
    task: str | None
    dimensions: int | None
    #: the live A/B its requests feed: the alias's own, else its model's (None: not shadowed)
    shadow: ShadowSettings | None = None


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model: its engines (name -> settings), routes as configured, parity reference."""

    id: str
    engines: Mapping[str, BaseModel]
    routes: Mapping[str, tuple[str, ...]]
    reference: str | None
    #: the task of a request that names the model itself
    task: str | None
    #: the top-level engines, routes and aliases (the jina-embeddings-v3 model of old configurations)
    legacy: bool = False

    def kind(self, engine: str) -> str:
        return engine_kind(self.engines[engine])


@dataclass(frozen=True, slots=True)
class Catalog:
    models: Mapping[str, ModelEntry]
    #: every ``model`` name a request may send: aliases and model ids
    aliases: Mapping[str, Resolved]
    #: the name a request without ``model`` gets
    default: str
    _owner: Mapping[str, str] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.aliases)

    def model_of(self, engine: str) -> str | None:
        """The model engine ``engine`` serves."""
        return self._owner.get(engine)

    @property
    def engines(self) -> dict[str, BaseModel]:
        """Every configured (enabled) engine by name, across models."""
        return {n: s for m in self.models.values() for n, s in m.engines.items()}


def _legacy_engines(settings: Settings) -> dict[str, BaseModel]:
    return {n: getattr(settings.engines, n) for n in type(settings.engines).model_fields
            if getattr(settings.engines, n).enabled}


def _first_in_process(engines: Mapping[str, BaseModel]) -> str | None:
    return next((n for n, s in engines.items() if engine_kind(s) in _IN_PROCESS), None)


def _with_routed_tasks(engines: Mapping[str, BaseModel], routes: Mapping[str, list[str]]) -> dict[str, BaseModel]:
    """A remote engine (``vllm``, ``openai``) without ``tasks`` serves the tasks its model's routes
    name it for, with no prompt (jina-v5's per-task servers); one no route names serves no task."""
    out: dict[str, BaseModel] = {}
    for name, s in engines.items():
        if engine_kind(s) in _REMOTE and not getattr(s, "tasks", None):
            routed = {key: "" for key, names in routes.items() if name in names}
            s = s.model_copy(update={"tasks": routed or {"none": ""}})
        out[name] = s
    return out


def build_catalog(settings: Settings) -> Catalog:
    """The catalog of ``settings``, or ``ValueError`` naming every conflict (an engine or alias name
    used twice, an alias of an unknown model, two default models, a reference that is not the model's)."""
    problems: list[str] = []
    models: dict[str, ModelEntry] = {}
    aliases: dict[str, Resolved] = {}
    configured = settings.models or {LEGACY_MODEL: None}
    legacy_taken = False
    for model_id, ms in configured.items():
        if ms is None or not ms.engines:
            if legacy_taken:
                problems.append(f"models.{model_id} has no engines, and only one model can use the top-level engines")
                continue
            legacy_taken = True
            engines = _legacy_engines(settings)
            reference = settings.parity.reference if ms is None or ms.parity.reference is None else ms.parity.reference
            routes = {k: tuple(v) for k, v in (settings.routes if ms is None or not ms.routes else ms.routes).items()}
            models[model_id] = ModelEntry(model_id, MappingProxyType(engines), MappingProxyType(routes), reference,
                                          None if ms is None else ms.task, legacy=True)
            for name, alias in settings.aliases.items():
                aliases[name] = Resolved(name, alias.model or model_id, alias.task, alias.dimensions, alias.shadow)
        else:
            reference = ms.parity.reference or _first_in_process(ms.engines)
            if reference is not None and reference not in ms.engines:
                problems.append(f"models.{model_id}.parity.reference {reference!r} is not one of its engines")
            models[model_id] = ModelEntry(model_id, MappingProxyType(_with_routed_tasks(ms.engines, ms.routes)),
                                          MappingProxyType({k: tuple(v) for k, v in ms.routes.items()}),
                                          reference, ms.task)
        if ms is not None:
            for name, alias in ms.aliases.items():
                if name in aliases:
                    problems.append(f"alias {name!r} is declared twice")
                aliases[name] = Resolved(name, alias.model or model_id, alias.task, alias.dimensions, alias.shadow)
    owner: dict[str, str] = {}
    for model_id, entry in models.items():
        for engine in entry.engines:
            if engine in owner:
                problems.append(f"engine name {engine!r} is used by models {owner[engine]!r} and {model_id!r}")
            owner[engine] = model_id
        for key, names in entry.routes.items():
            for name in names:
                if name not in entry.engines and not entry.legacy:
                    problems.append(f"models.{model_id}.routes.{key} names {name!r}, not an engine of this model")
        if model_id not in aliases:  # a model id is a name too: the model with its own default task
            aliases[model_id] = Resolved(model_id, model_id, entry.task, None)
    model_shadows = {m: ms.shadow for m, ms in (settings.models or {}).items() if ms is not None and ms.shadow}
    for name, resolved in list(aliases.items()):
        if resolved.model not in models:
            problems.append(f"alias {name!r} names unknown model {resolved.model!r}")
        if resolved.shadow is None and resolved.model in model_shadows:
            aliases[name] = resolved = replace(resolved, shadow=model_shadows[resolved.model])
        if resolved.shadow is not None and resolved.shadow.model not in aliases:
            problems.append(f"the shadow of {name!r} names {resolved.shadow.model!r}, which is no model or alias; "
                            f"available: {', '.join(sorted(aliases))}")
    defaults = [m for m, ms in (settings.models or {}).items() if ms is not None and ms.default]
    if len(defaults) > 1:
        problems.append(f"several models say default: true ({', '.join(defaults)}); choose one")
    default = settings.api.default_model
    if defaults and "default_model" not in settings.api.model_fields_set:
        default = defaults[0]
    if problems:
        raise ValueError("; ".join(problems))
    return Catalog(MappingProxyType(models), MappingProxyType(aliases), default, MappingProxyType(owner))

"""Which engines may serve a job, in which order: pure functions of the job, the config and state.

Nothing here does I/O or reads a clock: the caller passes which engines are quarantined by the
parity guard and which have an open circuit, so every rule is unit-tested without a server.

* :func:`resolve_routes` turns the configured ``routes`` into the effective table once (at
  start-up and on reload) and refuses configurations that cannot work.
* :func:`candidates` names the engines of a task's route able to serve a job: the one rule of
  "which engines serve which task", shared by :func:`plan` and by readiness
  (:mod:`gateway.pool.readiness`).
* :func:`plan` orders the engines for one job.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from gateway.contract import (
    ROUTE_KEYS,
    EngineCapabilities,
    EngineUnavailableError,
    UnsupportedTaskError,
    route_key,
)

__all__ = ["RouteConfigError", "candidates", "default_route", "plan", "resolve_routes", "task_keys"]


class RouteConfigError(ValueError):
    """The configured routes cannot work with the enabled engines (a start-up / reload error)."""


def _serves(caps: EngineCapabilities, key: str) -> bool:
    return any(route_key(t) == key for t in caps.tasks)


#: the built-in order of a default route, by engine kind (or, for an engine injected without a
#: kind, its name): a vLLM server first (the fast path), then jina-embeddings-v3 in process, then
#: the rest in the order they are configured
_PREFERENCE = ("vllm", "hf")


def default_route(
    key: str, capabilities: Mapping[str, EngineCapabilities], kinds: Mapping[str, str] | None = None
) -> list[str]:
    """The route of a task the operator did not list: enabled engines that serve it, in the
    built-in order (vLLM first), others after in their order. ``kinds``: engine name -> kind.

    Defaults never name a disabled engine, so the default config (vLLM off) works as is and
    turning ``engines.vllm.enabled`` on is all it takes to put vLLM in front for text-matching.
    """
    able = [n for n, c in capabilities.items() if _serves(c, key)]
    kinds = kinds or {}

    def rank(name: str) -> int:
        kind = kinds.get(name, name)
        return _PREFERENCE.index(kind) if kind in _PREFERENCE else len(_PREFERENCE)

    return sorted(able, key=lambda n: (rank(n), able.index(n)))


def task_keys(capabilities: Mapping[str, EngineCapabilities], *, well_known: bool = False) -> list[str]:
    """Every route key a model's engines serve (its task vocabulary); ``well_known``: the five
    well-known tasks and "none" first, whether served or not (the jina-embeddings-v3 model's table)."""
    keys = list(ROUTE_KEYS) if well_known else []
    for caps in capabilities.values():
        for key in sorted(route_key(t) for t in caps.tasks):
            if key not in keys:
                keys.append(key)
    return keys


def resolve_routes(
    configured: Mapping[str, Sequence[str]],
    capabilities: Mapping[str, EngineCapabilities],
    *,
    disabled: Collection[str] = (),
    kinds: Mapping[str, str] | None = None,
    keys: Sequence[str] | None = None,
    where: str = "routes",
) -> dict[str, list[str]]:
    """The effective routing table, or ``RouteConfigError`` naming what is wrong.

    ``capabilities`` holds the enabled engines; ``disabled`` the known engines switched off.
    A listed task is strict: every engine it names must be enabled and able to serve the task,
    because an operator who wrote ``text-matching: [vllm]`` means it, and silently serving it
    elsewhere would hide a broken deployment.
    """
    problems: list[str] = []
    table: dict[str, list[str]] = {}
    keys = list(ROUTE_KEYS) if keys is None else list(keys)
    for key in keys:
        if key not in configured:
            table[key] = default_route(key, capabilities, kinds)
            continue
        for name in configured[key]:
            if name in disabled:
                problems.append(f"{where}.{key} names engine {name!r}, which is disabled (engines.{name}.enabled: false)")
            elif name not in capabilities:
                known = ", ".join(sorted(capabilities)) or "none"
                problems.append(f"{where}.{key} names unknown engine {name!r} (enabled engines: {known})")
            elif not _serves(capabilities[name], key):
                problems.append(f"{where}.{key} names engine {name!r}, which cannot serve {key!r}")
        table[key] = list(configured[key])
    unknown = sorted(set(configured) - set(keys))
    problems += [f"{where}: unknown task {k!r}" for k in unknown]
    if problems:
        raise RouteConfigError("; ".join(problems))
    return table


def candidates(
    task: str | None,
    routes: Mapping[str, Sequence[str]],
    capabilities: Mapping[str, EngineCapabilities],
    *,
    late_chunking: bool = False,
    token_ids: bool = False,
    token_embeddings: bool = False,
) -> list[str]:
    """The engines of ``task``'s route that can do what the job needs, in route order, whatever
    their state (breaker, parity): who *would* serve it when every engine is up.

    Late chunking and per-token output are open to every engine that exposes token states, whatever
    the task's usual route.
    """
    route = list(routes.get(route_key(task), ()))
    if late_chunking or token_embeddings:
        route = route + [n for n in capabilities if n not in route]
    return [
        name
        for name in route
        if name in capabilities
        and task in capabilities[name].tasks
        and (capabilities[name].late_chunking or not late_chunking)
        and (capabilities[name].token_ids or not token_ids)
        and (capabilities[name].token_embeddings or not token_embeddings)
    ]


def plan(
    task: str | None,
    routes: Mapping[str, Sequence[str]],
    capabilities: Mapping[str, EngineCapabilities],
    *,
    late_chunking: bool = False,
    token_ids: bool = False,
    token_embeddings: bool = False,
    quarantined: Collection[str] = (),
    circuit_open: Collection[str] = (),
) -> list[str]:
    """Engines to try for a job, in order.

    1. The task's route, minus engines that cannot do what the job needs
       (none left: ``UnsupportedTaskError``, a 400 — no engine could ever serve it).
    2. Minus engines the parity guard has not cleared (``quarantined``): wrong vectors are worse
       than an error, so this holds even for the last engine (none left: ``EngineUnavailableError``).
    3. Minus engines with an open circuit — unless that would leave nothing: the breaker never
       removes the last engine able to serve a task; trying it beats failing for sure.
    """
    able = candidates(
        task, routes, capabilities, late_chunking=late_chunking, token_ids=token_ids, token_embeddings=token_embeddings
    )
    key = route_key(task)
    if not able:
        what = f"task {key!r}" + (" with late chunking" if late_chunking else "")
        if token_ids:
            what += " with token-id input"
        if token_embeddings:
            what += " with token embeddings"
        raise UnsupportedTaskError(f"no enabled engine serves {what}", param="task")
    cleared = [n for n in able if n not in quarantined]
    if not cleared:
        raise EngineUnavailableError(
            f"no engine for task {key!r} has passed the parity check ({', '.join(able)} held back); "
            "see GET /ready",
            retry_after=30,
        )
    closed = [n for n in cleared if n not in circuit_open]
    return closed or cleared

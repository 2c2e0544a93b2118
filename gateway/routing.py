"""Which engines may serve a job, in which order: a pure function of the job and the config.

``plan()`` does no I/O and keeps no state, so it is unit-tested without a server. The service
walks the plan, falling over to the next engine on retryable errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.contract import EngineCapabilities, Task, UnsupportedTaskError

__all__ = ["route_key", "plan"]


def route_key(task: Task | None) -> str:
    return "none" if task is None else task.value


def plan(
    task: Task | None,
    routes: Mapping[str, Sequence[str]],
    capabilities: Mapping[str, EngineCapabilities],
    *,
    late_chunking: bool = False,
    token_ids: bool = False,
) -> list[str]:
    """Engines to try for ``task``, in order: the task's route, minus engines that are off or
    cannot do what the job needs. Raises ``UnsupportedTaskError`` if none remains."""
    key = route_key(task)
    route = list(routes.get(key, ()))
    if late_chunking:
        # Only engines that expose token states can late-chunk, whatever the task's usual route.
        route = route + [n for n in capabilities if n not in route]
    chosen = [
        name
        for name in route
        if name in capabilities
        and task in capabilities[name].tasks
        and (capabilities[name].late_chunking or not late_chunking)
        and (capabilities[name].token_ids or not token_ids)
    ]
    if not chosen:
        what = f"task {key!r}" + (" with late chunking" if late_chunking else "")
        raise UnsupportedTaskError(f"no enabled engine serves {what}", param="task")
    return chosen

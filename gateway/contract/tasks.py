"""Task names: data that each engine declares, plus the well-known names clients send.

A task is a string: an engine says which it serves (``EngineCapabilities.tasks``), by its model's
own names (jina-embeddings-v3's five adapters, a sentence-transformers checkpoint's prompt names
such as ``query``/``passage``, jina-v5's ``retrieval``...). "No task" is ``None`` everywhere (base
weights, no instruction or prompt); its key in routing tables and metric labels is ``"none"``.

:class:`Task` names the **well-known** tasks that clients (Mem0, the Jina API, our aliases) send
whatever the model; an engine that serves the idea under another name maps it itself (a
sentence-transformers engine serves ``retrieval.query`` with its ``query`` prompt). Its order is
jina-embeddings-v3's adapter order, the index into that checkpoint's stacked LoRA tensors.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["NO_TASK", "ROUTE_KEYS", "TASKS", "Task", "parse_task", "route_key", "task_of_key"]

#: the routing-table key (and metric label) of "no task"
NO_TASK = "none"


class Task(StrEnum):
    RETRIEVAL_QUERY = "retrieval.query"
    RETRIEVAL_PASSAGE = "retrieval.passage"
    SEPARATION = "separation"
    CLASSIFICATION = "classification"
    TEXT_MATCHING = "text-matching"


#: The well-known tasks, in jina-embeddings-v3's adapter order.
TASKS: tuple[Task, ...] = tuple(Task)

#: the well-known route keys: the five tasks and "none"
ROUTE_KEYS: tuple[str, ...] = (*(t.value for t in TASKS), NO_TASK)


def route_key(task: str | None) -> str:
    """The routing-table key of ``task`` (``"none"`` for no task): the inverse of :func:`task_of_key`."""
    return NO_TASK if task is None else str(task)


def task_of_key(key: str | None) -> str | None:
    """The task a routing key or request field names: ``None`` for ``"none"`` (or no value); a
    well-known name as its :class:`Task`, any other name as the string itself."""
    if key is None or key == NO_TASK:
        return None
    try:
        return Task(key)
    except ValueError:
        return key


def parse_task(value: str | None) -> Task | None:
    """Return the well-known task named ``value`` (``None`` or ``"none"`` for no task).

    Raises ``ValueError`` naming the well-known tasks for anything else.
    """
    if value is None or value == NO_TASK:
        return None
    try:
        return Task(value)
    except ValueError:
        valid = ", ".join(t.value for t in TASKS)
        raise ValueError(f"unknown task {value!r}; valid tasks: {valid} (or none)") from None

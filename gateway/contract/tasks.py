"""The five task adapters of jina-embeddings-v3, defined once.

The order is the model's: it is the index into the stacked LoRA tensors of the original
checkpoint (``lora_adaptations`` in its config). "No task" is ``None`` everywhere: base weights,
no instruction.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ROUTE_KEYS", "TASKS", "Task", "parse_task", "route_key"]


class Task(StrEnum):
    RETRIEVAL_QUERY = "retrieval.query"
    RETRIEVAL_PASSAGE = "retrieval.passage"
    SEPARATION = "separation"
    CLASSIFICATION = "classification"
    TEXT_MATCHING = "text-matching"


#: All tasks, in the model's adapter order.
TASKS: tuple[Task, ...] = tuple(Task)

#: every key of the routing table (and of per-task views and metric labels): the five tasks and
#: "none" (base weights, no task); :func:`parse_task` reads each back, :func:`route_key` writes it
ROUTE_KEYS: tuple[str, ...] = (*(t.value for t in TASKS), "none")


def route_key(task: Task | None) -> str:
    """The routing-table key of ``task`` (``"none"`` for base weights): the inverse of :func:`parse_task`."""
    return "none" if task is None else task.value


def parse_task(value: str | None) -> Task | None:
    """Return the task named ``value`` (``None`` or ``"none"`` for base weights).

    Raises ``ValueError`` naming the valid tasks for anything else.
    """
    if value is None or value == "none":
        return None
    try:
        return Task(value)
    except ValueError:
        valid = ", ".join(t.value for t in TASKS)
        raise ValueError(f"unknown task {value!r}; valid tasks: {valid} (or none)") from None

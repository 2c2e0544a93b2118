"""The five task adapters of jina-embeddings-v3, defined once.

The order is the model's: it is the index into the stacked LoRA tensors of the original
checkpoint (``lora_adaptations`` in its config). "No task" is ``None`` everywhere: base weights,
no instruction.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["TASKS", "Task", "parse_task"]


class Task(StrEnum):
    RETRIEVAL_QUERY = "retrieval.query"
    RETRIEVAL_PASSAGE = "retrieval.passage"
    SEPARATION = "separation"
    CLASSIFICATION = "classification"
    TEXT_MATCHING = "text-matching"


#: All tasks, in the model's adapter order.
TASKS: tuple[Task, ...] = tuple(Task)


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

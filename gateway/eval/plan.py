"""Which configurations to evaluate for a model: task pairings, dimensions, encodings. Pure.

Everything here is decided from what ``GET /v1/models`` says about a name (its model's tasks,
width and whether it is Matryoshka-trained), so eval never asks a model for something the gateway
would refuse, and says why a configuration is missing instead of failing on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ENCODINGS",
    "ModelRef",
    "ModelView",
    "Pairing",
    "bytes_per_vector",
    "dimensions_for",
    "pairings",
    "parse_dimensions",
    "parse_model",
]

#: float: cosine on normalised float32 vectors; binary: 1 bit per dimension, Hamming distance
ENCODINGS: tuple[str, ...] = ("float", "binary")


@dataclass(frozen=True)
class ModelRef:
    """A ``--model`` value: a name on the gateway of ``--url``, or ``NAME@URL`` on another gateway
    (an int8 deployment runs as its own gateway: compare it with the exact one in one run)."""

    #: as given (what the results call it)
    label: str
    #: what requests send as ``model``
    name: str
    url: str


def parse_model(value: str, default_url: str) -> ModelRef:
    name, sep, url = value.partition("@")
    if sep and name and url.startswith(("http://", "https://")):
        return ModelRef(value, name, url)
    return ModelRef(value, value, default_url)


@dataclass(frozen=True)
class ModelView:
    """One name as ``GET /v1/models`` describes it."""

    name: str
    model: str
    tasks: tuple[str, ...]
    width: int
    matryoshka: bool

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> ModelView:
        width = card.get("max_dimensions") or card.get("dimensions")
        if not isinstance(width, int):
            raise ValueError(f"the gateway does not say how wide {card.get('id')!r} is (no max_dimensions)")
        return cls(
            name=str(card["id"]), model=str(card.get("model") or card["id"]),
            tasks=tuple(card.get("tasks") or ()), width=width, matryoshka=bool(card.get("matryoshka", False)),
        )


@dataclass(frozen=True)
class Pairing:
    """The task queries are embedded with and the task documents are embedded with."""

    name: str
    query_task: str
    passage_task: str


def pairings(tasks: Iterable[str]) -> tuple[Pairing, ...]:
    """The pairings a model offers: query/passage (asymmetric retrieval) and symmetric
    (``text-matching`` on both sides), each only when the model has those tasks; a model with
    neither (BGE-M3: no tasks at all) is evaluated without a task on both sides."""
    have = set(tasks)
    found = []
    if {"retrieval.query", "retrieval.passage"} <= have:
        found.append(Pairing("query/passage", "retrieval.query", "retrieval.passage"))
    elif "query" in have and ({"passage", "document"} & have):  # a sentence-transformers model's prompts
        found.append(Pairing("query/passage", "query", "passage" if "passage" in have else "document"))
    if "text-matching" in have:
        found.append(Pairing("symmetric", "text-matching", "text-matching"))
    if not found:
        found.append(Pairing("none", "none", "none"))
    return tuple(found)


def parse_dimensions(text: str | None) -> tuple[int, ...] | None:
    """``"1024,256,64"`` -> (1024, 256, 64); None or "" -> None (the full width)."""
    if not text:
        return None
    try:
        dims = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ValueError(f"--dimensions takes positive integers separated by commas, e.g. 1024,256,64; got {text!r}") from None
    if not dims or any(d < 1 for d in dims):
        raise ValueError(f"--dimensions takes positive integers separated by commas, e.g. 1024,256,64; got {text!r}")
    return tuple(sorted(set(dims), reverse=True))


def dimensions_for(view: ModelView, requested: Sequence[int] | None) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The dimensions to evaluate for ``view`` (widest first) and, in words, what was dropped and why."""
    if requested is None:
        return (view.width,), ()
    notes = []
    if not view.matryoshka:
        others = [d for d in requested if d != view.width]
        if others:
            notes.append(f"{view.name} is not Matryoshka-trained: only its full width {view.width} is evaluated "
                         f"(asked also for {', '.join(map(str, others))})")
        return (view.width,), tuple(notes)
    too_wide = [d for d in requested if d > view.width]
    kept = tuple(d for d in requested if d <= view.width)
    if too_wide:
        notes.append(f"{view.name} is {view.width} wide: {', '.join(map(str, too_wide))} left out")
    if not kept:
        notes.append(f"{view.name}: none of the dimensions asked for fits; its full width {view.width} is evaluated")
        kept = (view.width,)
    return kept, tuple(notes)


def bytes_per_vector(dimensions: int, encoding: str) -> int:
    """What one stored vector costs: float32 is 4 bytes a dimension, binary 1 bit (whole bytes)."""
    if encoding == "float":
        return 4 * dimensions
    if encoding == "binary":
        return (dimensions + 7) // 8
    raise ValueError(f"unknown encoding {encoding!r}; valid: {', '.join(ENCODINGS)}")

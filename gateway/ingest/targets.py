"""Which output each model of a run fills: one run may embed its input with several models
(``--model A --model B``, an A/B test's two indexes from one pass), and each model gets its own
collection, table or file, stamped with its own vector space.

The flags a user gives once per model are ``--model``, and then ``--collection`` / ``--table``
(``--milvus`` / ``--qdrant`` / ``--pgvector``) and ``--task``, each either once per model, in
``--model`` order, or once for every model. A single ``--collection`` / ``--table`` with several
models is a prefix: model ``M`` writes ``PREFIX_<slug of M>``; ``--output X.parquet`` becomes
``X.<slug of M>.parquet``. The slug is the one rule every store accepts in a name: ``M`` in lower
case, each character other than ``a-z``, ``0-9`` and ``_`` replaced by ``_`` (``bge-m3`` ->
``bge_m3``). Pure: this module only reads the parsed flags.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

__all__ = ["DEFAULT_TASK", "describe", "model_slug", "per_model"]

T = TypeVar("T")

#: the task of a run that names none (documents to search later)
DEFAULT_TASK = "retrieval.passage"


def model_slug(model: str) -> str:
    """``model`` as a part of a collection, table or file name that every store accepts."""
    return re.sub(r"[^a-z0-9_]", "_", model.lower())


def _one_each(flag: str, values: Sequence[T] | None, models: Sequence[str | None]) -> list[T | None]:
    """A flag given once per model (in order), once for all, or not at all (None for every model)."""
    if not values:
        return [None] * len(models)
    if len(values) == 1:
        return [values[0]] * len(models)
    if len(values) == len(models):
        return list(values)
    raise ValueError(f"{flag} is given {len(values)} times for {len(models)} --model: give it once for every "
                     "model, or once per --model in the same order")


def _names(flag: str, values: Sequence[str] | None, models: Sequence[str]) -> list[str | None]:
    """Store names per model: one each, or one prefix that each model's slug completes."""
    if values and len(values) == 1 and len(models) > 1:
        return [f"{values[0]}_{model_slug(m)}" for m in models]
    return _one_each(flag, values, models)


def per_model(args: argparse.Namespace) -> list[argparse.Namespace]:
    """One copy of the parsed flags per model, each with a single ``model``, ``task``,
    ``collection``, ``table`` and ``output`` (one copy, with the model given or None, when
    ``--model`` is given at most once: exactly a one-model run). Raises ``ValueError`` for flags
    that do not add up."""
    given: list[str] = list(args.model or [])
    several = len(given) > 1
    if several and not args.gateway:
        raise ValueError(f"{len(given)} --model need --gateway (a gateway serving every one of them); "
                         "--local and --ray embed with one model")
    models: list[str | None] = list(given) if given else [None]
    tasks = _one_each("--task", args.task, models)
    if several:
        store = "--milvus" if args.milvus else "--qdrant" if args.qdrant else None
        if store and not args.collection:
            raise ValueError(f"{store} needs --collection: once per --model, or once as a prefix (PREFIX_<model>)")
        if args.pgvector and not args.table:
            raise ValueError("--pgvector needs --table: once per --model, or once as a prefix (PREFIX_<model>)")
        collections = _names("--collection", args.collection, given)
        tables = _names("--table", args.table, given)
        outputs: list[Path | None] = [
            None if args.output is None else args.output.with_name(f"{args.output.stem}.{model_slug(m)}"
                                                                   f"{args.output.suffix}")
            for m in given
        ]
    else:
        collections = _one_each("--collection", args.collection, models)
        tables = _one_each("--table", args.table, models)
        outputs = [args.output]
    lanes: list[argparse.Namespace] = []
    for model, task, collection, table, output in zip(models, tasks, collections, tables, outputs, strict=True):
        lane = argparse.Namespace(**vars(args))
        lane.model, lane.task = model, task or DEFAULT_TASK
        lane.collection, lane.table, lane.output = collection, table, output
        lanes.append(lane)
    if several:
        _refuse_repeats(lanes)
    return lanes


def _refuse_repeats(lanes: Sequence[argparse.Namespace]) -> None:
    seen: set[tuple[str | None, str]] = set()
    for lane in lanes:
        if (lane.model, lane.task) in seen:
            raise ValueError(f"--model {lane.model} is given twice with --task {lane.task}")
        seen.add((lane.model, lane.task))
    where: dict[str, str] = {}
    for lane in lanes:
        target = describe(lane)
        if target in where:
            raise ValueError(f"--model {where[target]} and --model {lane.model} would both write {target}; "
                             "name each model's output with --collection / --table, once per --model")
        where[target] = lane.model


def describe(lane: argparse.Namespace) -> str:
    """Where one model's vectors go, for the plan printed before a run (never a DSN: it may hold a password)."""
    if lane.milvus:
        return f"Milvus collection {lane.collection!r} at {lane.milvus}"
    if lane.qdrant:
        return f"Qdrant collection {lane.collection!r} at {lane.qdrant}"
    if lane.pgvector:
        return f"Postgres table {lane.table!r}"
    return str(lane.output)

"""A wire view built from the internal type it shows, by one function.

Why: a view that copies an internal type field by field (``ready=report.ready, detail=report.detail,
...``) drifts when either side gains a field, and hides the few fields that really are computed.
:func:`wire_view` takes every field the view and its source share, by name; the caller names only
what differs (a computed or renamed field), so what is derived is what is written down.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["wire_view"]

V = TypeVar("V", bound=BaseModel)


def _field_names(source: object) -> list[str]:
    if dataclasses.is_dataclass(source) and not isinstance(source, type):
        return [f.name for f in dataclasses.fields(source)]
    if isinstance(source, BaseModel):
        return list(type(source).model_fields)
    raise TypeError(f"cannot build a wire view from a {type(source).__name__}")


def _plain(value: Any) -> Any:
    """Enums as their values: the wire speaks their names (``"open"``, ``"parity_failed"``)."""
    return value.value if isinstance(value, Enum) else value


def wire_view(view: type[V], source: object, *, omit: Collection[str] = (), **given: Any) -> V:
    """``view`` filled from ``source`` (a dataclass or a pydantic model instance): each field both
    have, by name (enums as their values), but those in ``omit`` (left unset: a view rendered with
    ``exclude_unset`` leaves them out); ``given`` sets the rest, or replaces a shared field."""
    shared = {
        name: _plain(getattr(source, name))
        for name in _field_names(source)
        if name in view.model_fields and name not in given and name not in omit
    }
    return view(**shared, **given)

"""The vector space a collection or table holds, stamped on it so that no run mixes two spaces.

Vectors of different models, tasks (jina-v3's adapters), widths or encodings are not comparable:
a search over a mix returns nonsense without any error. Every store ``embed`` writes is therefore
stamped when it is created (Milvus: a collection property; Qdrant: collection metadata; pgvector:
the table's comment), and a run whose stamp differs is refused before it writes anything (the
command exits with status 2).

The stamp is one JSON object. Its ``space`` key is reserved for a gateway-issued space id: when
that exists it identifies the space on its own and the other keys stay as a readable description,
so stamps written today keep working without a migration.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["STAMP_KEY", "Stamp", "StampMismatchError", "StampedStore", "check_stamp"]

#: the key under which the stamp object is stored (Qdrant metadata, pgvector comment, Milvus property prefix)
STAMP_KEY = "embed_gateway"

#: the keys compared while no space id exists
_DESCRIBED = ("model", "task", "dimensions", "encoding", "sparse")


class StampMismatchError(Exception):
    """The store holds another vector space than this run makes; nothing was written."""


@dataclass(frozen=True, slots=True)
class Stamp:
    """What the vectors of one run are. ``model`` None = the gateway's default alias; ``dimensions``
    None = the model's full width, known at the first write."""

    model: str | None
    task: str
    dimensions: int | None = None
    encoding: str = "float"
    #: reserved: a gateway-issued id of the vector space (model identity, task, width)
    space: str | None = None
    #: each record also has the model's sparse vector (hybrid search); written only when true, so
    #: stamps of dense-only stores read and compare as before
    sparse: bool = False

    def with_dimensions(self, dims: int) -> Stamp:
        return self if self.dimensions == dims else replace(self, dimensions=dims)

    def to_dict(self) -> dict[str, Any]:
        data = {"space": self.space, **{k: v for k, v in asdict(self).items() if k not in ("space", "sparse")}}
        return {**data, "sparse": True} if self.sparse else data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any) -> Stamp:
        if not isinstance(data, dict) or "task" not in data:
            raise ValueError(f"not an embed-gateway stamp: {data!r}")
        dims = data.get("dimensions")
        return cls(model=data.get("model"), task=str(data["task"]), dimensions=None if dims is None else int(dims),
                   encoding=str(data.get("encoding") or "float"), space=data.get("space"),
                   sparse=bool(data.get("sparse", False)))

    @classmethod
    def from_json(cls, text: str) -> Stamp:
        return cls.from_dict(json.loads(text))

    def describe(self) -> str:
        model = self.model if self.model is not None else "(the gateway's default model)"
        dims = self.dimensions if self.dimensions is not None else "full width"
        text = f"model={model}, task={self.task}, dimensions={dims}, encoding={self.encoding}"
        text += ", sparse vectors" if self.sparse else ""
        return f"space={self.space}, {text}" if self.space else text


def _differences(stored: Stamp, run: Stamp) -> list[str]:
    if stored.space and run.space:
        diffs = [] if stored.space == run.space else ["space"]
        return diffs + (["sparse"] if stored.sparse != run.sparse else [])
    diffs = []
    for key in _DESCRIBED:
        have, want = getattr(stored, key), getattr(run, key)
        if key == "dimensions" and (have is None or want is None):
            continue  # not known yet (full width): compared again at the first write
        if have != want:
            diffs.append(key)
    return diffs


def check_stamp(where: str, stored: Stamp | None, run: Stamp) -> None:
    """Raise :class:`StampMismatchError` naming both stamps when ``stored`` is another space than ``run``.
    An unstamped store (``None``, e.g. made by an older version) passes and is stamped by the run."""
    if stored is None:
        return
    diffs = _differences(stored, run)
    if diffs:
        raise StampMismatchError(
            f"{where} holds another vector space (it differs in {', '.join(diffs)}):\n"
            f"  stored:   {stored.describe()}\n"
            f"  this run: {run.describe()}\n"
            "vectors of different spaces cannot be searched together; write to another collection/table, "
            "or run with the stored stamp's settings"
        )


class StampedStore:
    """The first write of a store that is stamped: the width becomes known, the stamp is checked
    against the stored one (or adopted by an unstamped store), or the store is created stamped.
    Shared by the Milvus, Qdrant and pgvector sinks; each supplies the store's own operations."""

    stamp: Stamp | None
    stored_stamp: Stamp | None
    exists: bool
    checked_dims: int | None

    @property
    def _where(self) -> str:
        raise NotImplementedError

    def _check_existing(self, dims: int) -> None:
        """The existing store can hold ``dims``-wide vectors of this run (raises otherwise)."""
        raise NotImplementedError

    def _create(self, dims: int, stamp: Stamp | None) -> None:
        raise NotImplementedError

    def _write_stamp(self, stamp: Stamp) -> None:
        """Stamp an existing store that has no stamp (made by an older version, or by hand)."""
        raise NotImplementedError

    def preflight(self, dims: int, space: str | None) -> None:
        """Raise what the first write of ``dims``-wide vectors in ``space`` would raise (another
        width, another vector space), writing nothing: a run that fills several stores checks every
        one before it writes to any, so it never fills one and is then refused by the next."""
        if not self.exists:
            return
        self._check_existing(dims)
        if self.stamp is not None:
            stamp = self.stamp.with_dimensions(dims)
            check_stamp(self._where, self.stored_stamp, stamp if space is None else replace(stamp, space=space))

    def _ensure(self, dims: int) -> None:
        if self.checked_dims == dims:
            return
        if self.checked_dims is not None:
            raise ValueError(f"vectors changed width mid-run ({self.checked_dims} -> {dims})")
        stamp = self.stamp.with_dimensions(dims) if self.stamp is not None else None
        if self.exists:
            self._check_existing(dims)
            if stamp is not None:
                check_stamp(self._where, self.stored_stamp, stamp)
                if self.stored_stamp is None:
                    self._write_stamp(stamp)
                    self.stored_stamp = stamp
        else:
            self._create(dims, stamp)
            self.exists = True
            self.stored_stamp = stamp
        self.checked_dims = dims

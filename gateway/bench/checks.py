"""Targets a bench run is checked against, read from a file (``embed-gateway bench --checks``).

The targets are data, not code: configs/bench-checks.yaml ships the project's, and a run is
reported pass/fail against whatever file it is given. A check names numbers of the run's results
by path (see that file), so it reads the same JSON the bench writes.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Check", "CheckResult", "evaluate", "load_checks"]

_TARGET = re.compile(r"^\s*(<=|>=)\s*([0-9]*\.?[0-9]+)\s*([A-Za-z%]*)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}


class Check(BaseModel):
    """One target: ``measured`` (over ``per`` times ``per_scale``, if given) compared with ``target``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    #: path of a number in the results: ``workloads.W.T.KEY`` or ``SECTION.KEY``
    measured: str
    per: str | None = None
    per_scale: float = Field(1.0, gt=0)
    #: "<=" or ">=", a number, an optional unit: ">= 0.90", "<= 1 ms"
    target: str

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        if not _TARGET.match(v):
            raise ValueError(f"target {v!r} is not '<= N' or '>= N' (optionally with a unit)")
        return v

    def bound(self) -> tuple[Callable[[float, float], bool], float]:
        """The comparison and the threshold the target string says."""
        m = _TARGET.match(self.target)
        assert m is not None  # validated
        return _OPS[m.group(1)], float(m.group(2))


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checks: list[Check]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    measured: float
    target: str
    met: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_checks(path: str | Path) -> tuple[Check, ...]:
    """The checks of a YAML file (``checks:`` a list); a malformed file raises ``ValueError``."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return tuple(_File.model_validate(data).checks)


def _lookup(results: Mapping[str, Any], path: str) -> float | None:
    """The number at ``path``, or None when the run did not produce it."""
    head, _, rest = path.partition(".")
    if head == "workloads":
        workload, _, rest = rest.partition(".")
        target, _, key = rest.partition(".")
        rows = results.get("workloads", {}).get(workload, {}).get("targets", [])
        found = next((row[key] for row in rows if row.get("target") == target and key in row), None)
    else:
        section = results.get(head)
        found = section.get(rest) if isinstance(section, Mapping) else None
    return float(found) if isinstance(found, int | float) else None


def _value(results: Mapping[str, Any], check: Check) -> float | None:
    x = _lookup(results, check.measured)
    if check.per is None:
        return x
    y = _lookup(results, check.per)
    return x / (y * check.per_scale) if x and y else None


def evaluate(results: Mapping[str, Any], checks: Sequence[Check]) -> list[CheckResult]:
    """Each check the results have the numbers for, in the file's order."""
    out = []
    for check in checks:
        value = _value(results, check)
        if value is not None:
            compare, threshold = check.bound()
            out.append(CheckResult(check.name, round(value, 3), check.target, compare(value, threshold)))
    return out

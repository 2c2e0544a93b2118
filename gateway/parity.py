"""The cross-engine parity guard: every engine must return the reference engine's vectors.

Why: vectors from different engines land in the same Milvus collection. An engine that is
"almost right" (vLLM pooling the CLS token because the sentence-transformers files are missing,
another checkpoint revision, a different rotary base, a different normalisation) silently poisons
the collection: nothing errors, searches just get worse. So before an engine serves a task, and
periodically after, it embeds a fixed probe set and is compared with the reference (the exact
in-process engine).

Two numbers are checked on the *un-normalised* vectors every engine returns:

* mean cosine >= ``threshold`` — the direction, i.e. everything a normalised vector carries
  (pooling, weights, adapter, positions);
* mean |norm / reference norm - 1| <= ``max_norm_deviation`` — the length. The gateway normalises
  every engine's output itself, so an engine that *fails* to normalise cannot leak into
  ``normalized: true`` responses; but clients asking ``normalized: false`` get the raw vectors,
  and an engine that normalises (or scales) them when it should not would hand those clients
  different vectors. The norm check catches that.

:func:`compare` is pure; :func:`check` is the thin async shell that embeds the probes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from gateway.contract import EmbedJob, Engine, Task

__all__ = ["PROBES", "ParityResult", "ParityStatus", "check", "compare"]

#: Fixed probe texts: several languages and lengths. The long one matters: a wrong rotary base
#: barely moves a short sequence's vector but clearly moves one of a few hundred tokens.
PROBES: tuple[str, ...] = (
    "The user likes dark roast coffee in the morning.",
    "What time is the doctor appointment on Friday?",
    "Der Benutzer wohnt in einer kleinen Stadt und arbeitet an einem Projekt.",
    "L'utilisateur préfère le thé le soir et lit un livre.",
    "用户喜欢在周末旅行和听音乐。",
    "Người dùng thích cà phê và đi dạo trong công viên.",
    "password reset",
    " ".join(
        [
            "The gateway stores short facts about the user in a vector database and searches them by meaning.",
            "Every fact is embedded once when it is written and compared with queries for months afterwards,",
            "so a model that drifts even slightly between two servers makes old and new memories disagree.",
            "The user travels to Paris and Tokyo, reads books about jazz piano, walks the dog in the park,",
            "is allergic to peanuts, prefers dark mode, and has a project deadline every second Friday.",
        ]
        * 2
    ),
)


class ParityStatus(StrEnum):
    #: not compared (this engine is the reference, the guard is off, or no reference is enabled)
    NOT_REQUIRED = "not_required"
    #: not compared yet: kept out of its routes until it passes
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ParityResult:
    ok: bool
    task: Task | None
    mean_cosine: float
    min_cosine: float
    norm_deviation: float
    detail: str
    checked_at: float = 0.0  # wall-clock seconds (time.time()), for people reading /ready

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "task": None if self.task is None else self.task.value,
            "mean_cosine": round(self.mean_cosine, 6),
            "min_cosine": round(self.min_cosine, 6),
            "norm_deviation": round(self.norm_deviation, 6),
            "detail": self.detail,
            "checked_at": self.checked_at,
        }


def compare(
    reference: npt.NDArray[np.float32],
    candidate: npt.NDArray[np.float32],
    *,
    task: Task | None,
    threshold: float,
    max_norm_deviation: float,
) -> ParityResult:
    """Compare un-normalised probe vectors ``[n, d]`` of the candidate with the reference's."""
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if ref.shape != got.shape:
        return ParityResult(False, task, 0.0, 0.0, float("inf"), f"shape {got.shape} differs from the reference's {ref.shape}")
    if not np.isfinite(got).all():
        return ParityResult(False, task, 0.0, 0.0, float("inf"), "non-finite values in the vectors")
    ref_norm = np.linalg.norm(ref, axis=1)
    got_norm = np.linalg.norm(got, axis=1)
    cos = (ref * got).sum(axis=1) / np.maximum(ref_norm * got_norm, 1e-30)
    mean_cos, min_cos = float(cos.mean()), float(cos.min())
    deviation = float(np.abs(got_norm / np.maximum(ref_norm, 1e-30) - 1.0).mean())
    problems = []
    if mean_cos < threshold:
        problems.append(f"mean cosine {mean_cos:.6f} < threshold {threshold}")
    if deviation > max_norm_deviation:
        hint = ": directions match, so the engine normalises or scales its output" if not problems else ""
        problems.append(
            f"norms of the un-normalised vectors differ by {deviation:.2%} on average "
            f"(max {max_norm_deviation:.2%}){hint}"
        )
    detail = "; ".join(problems) or f"mean cosine {mean_cos:.6f}, norm deviation {deviation:.2e}"
    return ParityResult(not problems, task, mean_cos, min_cos, deviation, detail, time.time())


async def embed_probes(engine: Engine, task: Task | None) -> npt.NDArray[np.float32]:
    result = await engine.embed(EmbedJob(inputs=PROBES, task=task, truncate=True, request_id="parity-probe"))
    return np.asarray(result.vectors, dtype=np.float32)


async def check(
    engine: Engine,
    reference_vectors: npt.NDArray[np.float32],
    *,
    task: Task | None,
    threshold: float,
    max_norm_deviation: float,
) -> ParityResult:
    """Embed the probes on ``engine`` and compare. Engine errors propagate (the caller decides:
    an unreachable engine is a breaker matter, not a parity failure)."""
    got = await embed_probes(engine, task)
    return compare(reference_vectors, got, task=task, threshold=threshold, max_norm_deviation=max_norm_deviation)

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

:func:`compare` is pure; :func:`check` is the thin async shell that embeds the probes. Which
engine is compared on which task (:func:`reference_of`, :func:`parity_tasks`), what a new snapshot
does to a status (:func:`status_on_swap`) and one whole check with its reference cache, metrics and
log lines (:class:`ParityGuard`) live here too: the guard is this one module. The circuit breaker
effects of a check are the supervisor's (:mod:`gateway.pool.supervisor`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from gateway.config import ParitySettings
from gateway.contract import EmbedGatewayError, EmbedJob, Engine, EngineCapabilities, RetryableError, Task, route_key
from gateway.pool.events import PoolEvents

if TYPE_CHECKING:
    from gateway.pool.snapshot import Snapshot
    from gateway.pool.state import EngineState

__all__ = [
    "PROBES",
    "ParityGuard",
    "ParityResult",
    "ParityStatus",
    "check",
    "compare",
    "parity_tasks",
    "reference_of",
    "status_on_swap",
]

log = logging.getLogger(__name__)

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
    task: str | None
    mean_cosine: float
    min_cosine: float
    norm_deviation: float
    detail: str
    checked_at: float = 0.0  # wall-clock seconds (time.time()), for people reading /ready


def compare(
    reference: npt.NDArray[np.float32],
    candidate: npt.NDArray[np.float32],
    *,
    task: str | None,
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


async def embed_probes(engine: Engine, task: str | None) -> npt.NDArray[np.float32]:
    result = await engine.embed(EmbedJob(inputs=PROBES, task=task, truncate=True, request_id="parity-probe"))
    return np.asarray(result.vectors, dtype=np.float32)


async def check(
    engine: Engine,
    reference_vectors: npt.NDArray[np.float32],
    *,
    task: str | None,
    threshold: float,
    max_norm_deviation: float,
) -> ParityResult:
    """Embed the probes on ``engine`` and compare. Engine errors propagate (the caller decides:
    an unreachable engine is a breaker matter, not a parity failure)."""
    got = await embed_probes(engine, task)
    return compare(reference_vectors, got, task=task, threshold=threshold, max_norm_deviation=max_norm_deviation)


# ---------------------------------------------------------------------- who is compared on what


def reference_of(p: ParitySettings, started: Mapping[str, bool]) -> str | None:
    """The engine others are compared with; None when the guard is off, or the reference is not
    enabled or failed to start (nothing to compare with: availability wins, and the start-up log
    says so). ``started``: engine name -> whether it started."""
    return p.reference if p.enabled and started.get(p.reference, False) else None


def parity_tasks(
    name: str,
    reference: str | None,
    routes: Mapping[str, Sequence[str]],
    capabilities: Mapping[str, EngineCapabilities],
) -> frozenset[str | None]:
    """Tasks on which ``name`` must match the reference: tasks routed to it that the reference
    serves too. Empty for the reference itself, or when there is nothing to compare with."""
    if reference is None or reference == name or name not in capabilities or reference not in capabilities:
        return frozenset()
    ref_caps, caps = capabilities[reference], capabilities[name]
    return frozenset(
        t for t in (*ref_caps.tasks, *caps.tasks)
        if t in ref_caps.tasks and t in caps.tasks and name in routes.get(route_key(t), ())
    )


def status_on_swap(state: EngineState, tasks: frozenset[str | None]) -> None:
    """A new snapshot compares an engine on ``tasks``: nothing to compare is NOT_REQUIRED; newly
    compared, or compared on a new task, is PENDING (checked before it serves); else unchanged."""
    if not tasks:
        state.parity, state.parity_results = ParityStatus.NOT_REQUIRED, {}
    elif state.parity is ParityStatus.NOT_REQUIRED or not tasks <= state.parity_tasks:
        state.parity = ParityStatus.PENDING
    state.parity_tasks = tasks


# ---------------------------------------------------------------------- one check


class ParityGuard:
    """Runs checks: caches the reference's probe vectors, records results, metrics and log lines."""

    def __init__(self, events: PoolEvents, clock: Callable[[], float] = time.monotonic) -> None:
        self.events = events
        self.clock = clock
        self._reference_vectors: dict[tuple[int, str], npt.NDArray[np.float32]] = {}

    def forget_reference(self) -> None:
        """The reference or its settings may have changed (a reload)."""
        self._reference_vectors.clear()

    async def check(self, snap: Snapshot, name: str, state: EngineState) -> bool | None:
        """Compare engine ``name`` with the reference on each of its parity tasks and record the
        outcome in ``state``. Returns whether it passed; None when nothing was checked (no duty,
        or the reference failed). A ``RetryableError`` of the candidate propagates: an engine that
        does not answer is a breaker matter, not a parity failure."""
        member = snap.members[name]
        reference = snap.reference_of(name)
        ref = snap.members.get(reference) if reference is not None else None
        if ref is None or not member.parity_tasks:
            return None
        p = snap.settings.parity
        results: dict[str, ParityResult] = {}
        for task in sorted(member.parity_tasks, key=route_key):
            key = route_key(task)
            try:
                expected = await self._reference(ref.engine, task)
            except EmbedGatewayError as exc:
                log.warning("parity guard: reference engine %s failed (%s); %s not checked this time",
                            ref.name, exc.message, name)
                return None
            try:
                result = await check(
                    member.engine, expected, task=task, threshold=p.threshold, max_norm_deviation=p.max_norm_deviation
                )
            except RetryableError:
                raise
            except EmbedGatewayError as exc:
                result = ParityResult(False, task, 0.0, 0.0, float("inf"), f"engine error: {exc.message}", time.time())
            results[key] = result
            self.events.parity_checked(name, key, mean_cosine=result.mean_cosine, ok=result.ok)
        ok = all(r.ok for r in results.values())
        before, before_results = state.parity, state.parity_results
        state.parity = ParityStatus.PASSED if ok else ParityStatus.FAILED
        state.parity_results = results
        state.parity_checked_at = self.clock()
        if ok:
            if before is not ParityStatus.PASSED:
                log.info("parity guard: engine %s matches %s (%s)", name, ref.name,
                         "; ".join(f"{k}: {r.detail}" for k, r in results.items()))
            return True
        failing = {k for k, r in results.items() if not r.ok}
        if before is not ParityStatus.FAILED or failing != {k for k, r in before_results.items() if not r.ok}:
            log.error(
                "parity guard: engine %s does NOT match %s and is out of its routes: %s",
                name, ref.name, "; ".join(f"{k}: {r.detail}" for k, r in results.items() if not r.ok),
            )
        return False

    async def _reference(self, engine: Engine, task: str | None) -> npt.NDArray[np.float32]:
        cache_key = (id(engine), route_key(task))
        if cache_key not in self._reference_vectors:
            self._reference_vectors[cache_key] = await embed_probes(engine, task)
        return self._reference_vectors[cache_key]

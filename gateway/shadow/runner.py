"""Shadow A/B, live: a sample of a model's requests is also embedded by a candidate, in the
background, and the two models' neighbourhoods are compared over a rolling window of texts.

Why this shape: the primary's response must never wait for, fail with, or change because of the
candidate. :meth:`Shadow.offer` is synchronous and non-blocking: it samples, copies the primary's
vectors and puts the texts in a bounded queue, or counts a drop when the queue is full; a few
workers per (primary, candidate) pair (``shadow.concurrency``, their own budget) drain it through
the same embedding service as any request, in a context of their own (no request's context, no
front-door admission, never shadowed again), and send what waits together as one candidate
request (up to ``shadow.batch`` texts), so a stream of one-text requests costs the primary's
process one round trip per batch, not per request. What they learn is kept per task and vector width
(query vectors and passage vectors are different neighbourhoods): the last ``window`` distinct
texts with both models' vectors; the agreement is computed from them when read
(:mod:`gateway.shadow.agreement`), cached until the window changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from gateway.contract import DENSE, route_key
from gateway.serving.service import resolve_model
from gateway.serving.spec import EmbeddingSpec
from gateway.shadow.agreement import Agreement, agreement

if TYPE_CHECKING:
    from gateway.catalog import Resolved
    from gateway.config import ShadowSettings
    from gateway.pool import Snapshot
    from gateway.serving.service import EmbedOutcome

__all__ = ["LaneView", "PairView", "Shadow"]

log = logging.getLogger(__name__)

#: candidate latencies kept for the percentiles of ``GET /admin/shadow``
_LATENCIES = 1000

Embed = Callable[[EmbeddingSpec], Awaitable["EmbedOutcome"]]
#: called after each candidate request: (primary, candidate, seconds)
Observe = Callable[[str, str, float], None]


@dataclass(frozen=True, slots=True)
class LaneView:
    """What one task and width of a pair has learned."""

    task: str
    dimensions: int
    texts: int
    agreement: Agreement | None


@dataclass(frozen=True, slots=True)
class PairView:
    """One (primary, candidate) pair: its counters, the candidate's cost, its lanes."""

    primary: str
    candidate: str
    fraction: float
    #: primary requests sampled for the candidate (shadowed + dropped + failed + waiting)
    sampled: int
    #: sampled requests the candidate embedded
    shadowed: int
    #: texts they carried
    texts: int
    #: sampled requests dropped because the queue was full
    dropped: int
    #: sampled requests whose candidate request failed (never seen by the primary's client)
    failed: int
    #: requests waiting in the queue now
    queued: int
    #: the candidate's tokens, all shadowed requests
    candidate_tokens: int
    #: latency of the candidate's requests (each carries the sampled requests that waited together)
    candidate_p50_ms: float | None
    candidate_p95_ms: float | None
    lanes: tuple[LaneView, ...]


@dataclass(slots=True)
class _Sample:
    texts: tuple[str, ...]
    #: the primary's served vectors, one row per text (a copy)
    vectors: npt.NDArray[np.float32]
    task: str | None


@dataclass(slots=True)
class _Lane:
    window: int
    neighbours: int
    #: text -> (primary vector, candidate vector), oldest first
    pairs: OrderedDict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]] = field(default_factory=OrderedDict)
    version: int = 0
    _cached: tuple[int, Agreement | None] = (-1, None)

    def add(self, texts: tuple[str, ...], primary: npt.NDArray[np.float32], candidate: npt.NDArray[np.float32]) -> None:
        for text, p, c in zip(texts, primary, candidate, strict=True):
            self.pairs[text] = (p, c)
            self.pairs.move_to_end(text)
        while len(self.pairs) > self.window:
            self.pairs.popitem(last=False)
        self.version += 1

    def agreement(self) -> Agreement | None:
        if self._cached[0] != self.version:
            rows = list(self.pairs.values())
            found = None
            if rows:
                found = agreement(np.stack([p for p, _ in rows]), np.stack([c for _, c in rows]), self.neighbours)
            self._cached = (self.version, found)
        return self._cached[1]


class _Pair:
    """One primary model shadowed by one candidate, with the settings it was started with."""

    def __init__(self, primary: str, settings: ShadowSettings, shadow: Shadow) -> None:
        self.primary, self.settings, self.shadow = primary, settings, shadow
        self.queue: asyncio.Queue[_Sample] = asyncio.Queue(maxsize=settings.queue)
        self.sampled = self.shadowed = self.texts = self.dropped = self.failed = self.tokens = 0
        self.latencies: deque[float] = deque(maxlen=_LATENCIES)
        self.lanes: dict[tuple[str, int], _Lane] = {}
        # an empty context each: a worker is started inside the request that first sampled, and
        # must not carry that request's context (its snapshot, its log fields) into every later one
        self.workers = [asyncio.create_task(self._work(), name=f"shadow:{primary}->{settings.model}",
                                            context=contextvars.Context())
                        for _ in range(settings.concurrency)]

    def offer(self, sample: _Sample) -> None:
        self.sampled += 1
        try:
            self.queue.put_nowait(sample)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _work(self) -> None:
        while True:
            batch = [await self.queue.get()]
            texts = len(batch[0].texts)
            # what else waits goes along in the same candidate request: one round trip per batch,
            # not per sampled request (the dispatch is the primary process's only cost)
            while texts < self.settings.batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
                texts += len(batch[-1].texts)
            try:
                groups: dict[tuple[str | None, int], list[_Sample]] = {}
                for sample in batch:
                    groups.setdefault((sample.task, sample.vectors.shape[1]), []).append(sample)
                for group in groups.values():
                    await self._shadow(group)
            finally:
                for _ in batch:
                    self.queue.task_done()

    async def _shadow(self, group: list[_Sample]) -> None:
        """One candidate request for sampled requests of one task and width."""
        shadow, candidate = self.shadow, self.settings.model
        texts = tuple(t for sample in group for t in sample.texts)
        started = time.perf_counter()
        try:
            spec = shadow.candidate_spec(candidate, group[0].task, texts)
            outcome = await shadow.embed(spec)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the candidate's failure is counted, never the primary's
            self.failed += len(group)
            log.debug("shadow request to %s failed: %s", candidate, err)
            return
        seconds = time.perf_counter() - started
        tokens = sum(outcome.token_counts)
        self.shadowed += len(group)
        self.texts += len(texts)
        self.tokens += tokens
        self.latencies.append(seconds)
        primary = group[0].vectors if len(group) == 1 else np.concatenate([s.vectors for s in group])
        lane = self.lanes.setdefault(
            (route_key(group[0].task), primary.shape[1]), _Lane(self.settings.window, self.settings.neighbours)
        )
        lane.add(texts, primary, outcome.vectors)
        if shadow.observe is not None:
            shadow.observe(self.primary, candidate, seconds)

    def view(self) -> PairView:
        ms = np.asarray(self.latencies, dtype=np.float64) * 1000.0
        p50, p95 = (float(np.percentile(ms, 50)), float(np.percentile(ms, 95))) if len(ms) else (None, None)
        return PairView(
            primary=self.primary, candidate=self.settings.model, fraction=self.settings.fraction,
            sampled=self.sampled, shadowed=self.shadowed, texts=self.texts, dropped=self.dropped,
            failed=self.failed, queued=self.queue.qsize(), candidate_tokens=self.tokens,
            candidate_p50_ms=p50, candidate_p95_ms=p95,
            lanes=tuple(LaneView(task, width, len(lane.pairs), lane.agreement())
                        for (task, width), lane in sorted(self.lanes.items())),
        )

    async def aclose(self) -> None:
        for w in self.workers:
            w.cancel()
        for w in self.workers:
            with contextlib.suppress(asyncio.CancelledError):
                await w


class Shadow:
    """Every live shadow of the gateway; ``offer`` is its one entry on the request path."""

    def __init__(self, embed: Embed, *, observe: Observe | None = None, rng: random.Random | None = None) -> None:
        #: the embedding service's entry that never shadows (a candidate's request is not sampled again)
        self.embed = embed
        self.observe = observe
        self._rng = rng or random.Random()
        self._pairs: dict[tuple[str, str], _Pair] = {}
        #: the snapshot the last offer ran on: the candidate is resolved on it
        self._snap: Snapshot | None = None

    def offer(self, snap: Snapshot, resolved: Resolved, spec: EmbeddingSpec, task: str | None,
              outcome: EmbedOutcome) -> None:
        """Sample one served request for its shadow, if it has one. Never raises, never waits."""
        settings = resolved.shadow
        if settings is None or not _comparable(spec) or self._rng.random() >= settings.fraction:
            return
        if snap is not self._snap:
            self._snap = snap
            self._retire(snap)
        key = (resolved.model, settings.model_dump_json())  # a reload that changes the settings starts a new pair
        pair = self._pairs.get(key)
        if pair is None:
            pair = self._pairs[key] = _Pair(resolved.model, settings, self)
        texts = tuple(x for x in spec.inputs if isinstance(x, str))
        pair.offer(_Sample(texts, np.array(outcome.vectors, dtype=np.float32, copy=True), task))

    def _retire(self, snap: Snapshot) -> None:
        """Stop the pairs a reload removed or changed: their workers end, their figures leave the view."""
        assert snap.catalog is not None
        live = {(r.model, r.shadow.model_dump_json()) for r in snap.catalog.aliases.values() if r.shadow is not None}
        for key in [k for k in self._pairs if k not in live]:
            pair = self._pairs.pop(key)
            for worker in pair.workers:
                worker.cancel()

    def candidate_spec(self, candidate: str, task: str | None, texts: tuple[str, ...]) -> EmbeddingSpec:
        """The candidate's request: the primary's task where the candidate model serves it, else the
        candidate name's own task; full width, normalised, cut to the candidate's input limit
        (the candidate answers for the texts the primary answered for), never from the cache
        (its latency and tokens are the candidate's real cost)."""
        snap = self._snap
        assert snap is not None
        resolved = resolve_model(snap, candidate)
        served = snap.model_routes(resolved.model).get(route_key(task))
        return EmbeddingSpec(
            model=candidate, inputs=texts, has_token_ids=False, task=task if served else resolved.task, task_given=True,
            dimensions=None, normalized=True, truncate=True, cache="off",
        )

    def views(self) -> list[PairView]:
        return [pair.view() for pair in self._pairs.values()]

    async def aclose(self) -> None:
        pairs, self._pairs = list(self._pairs.values()), {}
        for pair in pairs:
            await pair.aclose()


def _comparable(spec: EmbeddingSpec) -> bool:
    """Plain dense requests of texts: one pooled vector per text, comparable across models."""
    return (spec.outputs == {DENSE} and not spec.has_token_ids and not spec.late_chunking
            and spec.chunking is None and not spec.token_embeddings)

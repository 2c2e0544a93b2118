"""One job through the cache: look every input up, send only the misses to the engines, store
what they return, and put the answer back together in the request's order.

The engines are reached through ``compute(job, pin)`` (the service's plan walk, or with ``pin`` one
named engine only), which says which engine served and its identity. Entries are keyed by the
identity of the engine the request's plan puts first (:class:`~gateway.cache.key.KeyScope`); when a
fallback makes another engine (another identity) compute the misses, the inputs that hit are
computed on that engine too, so one response never mixes two engines' vectors, and its results are
stored under that engine's own identity.

A plain job has one key per input; a late-chunking job one key for the whole document. Concurrent
identical misses are computed once (:meth:`CacheStore.claim`); a request waiting for another's
flight computes the key itself if that flight fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from gateway.cache.entry import CacheEntry
from gateway.cache.key import KeyScope, chunked_key, input_key, late_key
from gateway.cache.store import CacheStore
from gateway.contract import EmbedJob, EmbedResult, TooManyTokensError

__all__ = ["Compute", "Computed", "Served", "Source", "serve_cached"]

#: where a response's vectors came from (the ``x-embed-cache`` header)
Source = Literal["memory", "redis", "miss", "partial", "off"]


@dataclass(frozen=True, slots=True)
class Computed:
    """What ``compute`` returns: the engine's result, the member that served it and its identity."""

    result: EmbedResult
    engine: str
    identity: str | None


#: the service's engine call: ``(job, pin)``; ``pin`` names the only engine allowed, else the plan
Compute = Callable[[EmbedJob, str | None], Awaitable[Computed]]


@dataclass(frozen=True, slots=True)
class Served:
    vectors: npt.NDArray[np.float32]
    token_counts: tuple[int, ...]
    spans: tuple[tuple[int, int], ...] | None
    source: Source
    #: the engine whose vectors these are: the one that computed the misses, else None (all hits)
    engine: str | None


def _source(sources: Sequence[str]) -> Source:
    kinds = set(sources)
    if len(kinds) == 1:
        only = kinds.pop()
        return "miss" if only == "miss" else ("memory" if only == "memory" else "redis")
    return "partial"


def _storable(result: EmbedResult, rows: int) -> bool:
    """An entry needs a token count per row (an engine that only knows a total is not stored)."""
    return len(result.token_counts) == rows == result.vectors.shape[0]


async def serve_cached(
    store: CacheStore, scope: KeyScope, job: EmbedJob, compute: Compute, *, read: bool = True
) -> Served:
    """``job`` served from the cache where it can be, from ``compute`` where not. ``read=False``
    (a client's ``no-cache``) computes everything and stores it."""
    if job.late_chunking:
        return await _serve_document(store, scope, job, compute, read=read)
    return await _serve_inputs(store, scope, job, compute, read=read)


async def _serve_document(store: CacheStore, scope: KeyScope, job: EmbedJob, compute: Compute, *, read: bool) -> Served:
    doc = job.inputs[0]
    if job.chunking is not None and isinstance(doc, str):
        key = chunked_key(scope, job.chunking, doc)
    else:
        key = late_key(scope, job.inputs)
    if read:
        (found,) = await store.get_many([key])
        if found is not None:
            entry, tier = found
            _check_tokens(sum(entry.token_counts), job.max_total_tokens)
            return Served(entry.vectors, entry.token_counts, entry.spans, tier, None)
    mine, theirs = store.claim([key]) if read else ([key], {})
    if theirs:
        entry = await asyncio.shield(theirs[key])
        if entry is not None:
            return Served(entry.vectors, entry.token_counts, entry.spans, "miss", None)
    stored: dict[str, CacheEntry] = {}
    try:
        done = await compute(job, None)
        res = done.result
        entry = CacheEntry(res.vectors, res.token_counts, res.spans)
        if done.identity is not None and _storable(res, res.vectors.shape[0]):
            own = key if done.identity == scope.identity else _rekey(scope, done.identity, job)
            await store.put_many([(own, entry)])
            if own == key:
                stored[key] = entry
        return Served(res.vectors, res.token_counts, res.spans, "miss", done.engine)
    finally:
        store.land(mine, stored)


def _rekey(scope: KeyScope, identity: str, job: EmbedJob) -> str:
    other = dataclasses.replace(scope, identity=identity)
    doc = job.inputs[0]
    if job.chunking is not None and isinstance(doc, str):
        return chunked_key(other, job.chunking, doc)
    return late_key(other, job.inputs)


async def _serve_inputs(store: CacheStore, scope: KeyScope, job: EmbedJob, compute: Compute, *, read: bool) -> Served:
    n = len(job.inputs)
    keys = [input_key(scope, x) for x in job.inputs]
    rows: list[npt.NDArray[np.float32] | None] = [None] * n
    counts: list[int | None] = [None] * n
    sources: list[str] = ["miss"] * n
    if read:
        distinct = list(dict.fromkeys(keys))
        found = dict(zip(distinct, await store.get_many(distinct), strict=True))
        for i, key in enumerate(keys):
            hit = found[key]
            if hit is not None:
                rows[i], counts[i], sources[i] = hit[0].vectors[0], hit[0].token_counts[0], hit[1]
    hit_tokens = sum(c for c in counts if c is not None)
    limit = job.max_total_tokens
    _check_tokens(hit_tokens, limit)
    missed = [i for i in range(n) if rows[i] is None]
    if not missed:
        return Served(np.stack([r for r in rows if r is not None]), tuple(c for c in counts if c is not None),
                      None, _source(sources), None)

    missed_keys = list(dict.fromkeys(keys[i] for i in missed))
    mine, theirs = store.claim(missed_keys) if read else (missed_keys, {})
    mine_set = set(mine)
    #: extra token counts when an engine reports only a total (it goes into usage as is)
    totals: list[int] = []
    engine: str | None = None
    stored: dict[str, CacheEntry] = {}
    try:
        to_compute = [i for i in missed if keys[i] in mine_set]
        if to_compute:
            done = await _compute(job, to_compute, compute, None, hit_tokens)
            engine = done.engine
            _fill(done, to_compute, rows, counts, totals)
            if done.identity != scope.identity:
                await _one_engine(store, scope, job, compute, done, to_compute, rows, counts, totals, sources)
                return _assemble(rows, counts, totals, sources, engine, limit)
            stored = await _store(store, scope, job, to_compute, done)
    finally:
        store.land(mine, stored)

    if theirs:
        waited = {key: await asyncio.shield(fut) for key, fut in theirs.items()}
        failed = [i for i in missed if keys[i] in theirs and waited[keys[i]] is None]
        for i in missed:
            entry = waited.get(keys[i])
            if entry is not None:
                rows[i], counts[i] = entry.vectors[0], entry.token_counts[0]
        if failed:  # their flight failed: compute these ourselves (on the engine that served ours, if any)
            done = await _compute(job, failed, compute, engine, hit_tokens)
            engine = done.engine
            _fill(done, failed, rows, counts, totals)
            if done.identity == scope.identity:
                await _store(store, scope, job, failed, done)
            else:
                await _one_engine(store, scope, job, compute, done, failed, rows, counts, totals, sources)
    return _assemble(rows, counts, totals, sources, engine, limit)


async def _one_engine(
    store: CacheStore, scope: KeyScope, job: EmbedJob, compute: Compute, done: Computed, computed: Sequence[int],
    rows: list[npt.NDArray[np.float32] | None], counts: list[int | None], totals: list[int], sources: list[str],
) -> None:
    """A fallback made another engine (another identity) compute ``computed``: compute every other
    input on that engine too (one engine per response), and store both under its identity."""
    done_set = set(computed)
    others = [i for i in range(len(rows)) if i not in done_set]
    again: Computed | None = None
    if others:
        again = await _compute(job, others, compute, done.engine, 0)
        _fill(again, others, rows, counts, totals)
        for i in others:
            sources[i] = "miss"
    if done.identity is not None:
        theirs = dataclasses.replace(scope, identity=done.identity)
        await _store(store, theirs, job, computed, done)
        if again is not None:
            await _store(store, theirs, job, others, again)


async def _compute(job: EmbedJob, idx: Sequence[int], compute: Compute, pin: str | None, hit_tokens: int) -> Computed:
    """The inputs at ``idx`` as one job (the token limit less what the hits already use)."""
    limit = job.max_total_tokens
    sub = dataclasses.replace(
        job, inputs=[job.inputs[i] for i in idx], max_total_tokens=None if limit is None else limit - hit_tokens
    )
    try:
        return await compute(sub, pin)
    except TooManyTokensError as err:
        if limit is None or not hit_tokens:
            raise
        raise TooManyTokensError(err.n_tokens + hit_tokens, limit) from None


def _fill(done: Computed, idx: Sequence[int], rows: list[npt.NDArray[np.float32] | None],
          counts: list[int | None], totals: list[int]) -> None:
    res = done.result
    for j, i in enumerate(idx):
        rows[i] = res.vectors[j]
    if _storable(res, len(idx)):
        for j, i in enumerate(idx):
            counts[i] = res.token_counts[j]
    else:
        for i in idx:
            counts[i] = 0
        totals.extend(res.token_counts)


async def _store(store: CacheStore, scope: KeyScope, job: EmbedJob, idx: Sequence[int], done: Computed) -> dict[str, CacheEntry]:
    """Entries for the inputs at ``idx`` (one per distinct key) under ``scope``; nothing when the
    engine has no identity or reported only a token total."""
    res = done.result
    if done.identity is None or scope.identity != done.identity or not _storable(res, len(idx)):
        return {}
    items: dict[str, CacheEntry] = {}
    for j, i in enumerate(idx):
        items.setdefault(input_key(scope, job.inputs[i]),
                         CacheEntry(res.vectors[j:j + 1].copy(), (res.token_counts[j],)))
    await store.put_many(list(items.items()))
    return items


def _assemble(rows: list[npt.NDArray[np.float32] | None], counts: list[int | None], totals: list[int],
              sources: list[str], engine: str | None, limit: int | None) -> Served:
    vectors = np.stack([r for r in rows if r is not None]).astype(np.float32, copy=False)
    assert vectors.shape[0] == len(rows), "every input has a vector"
    token_counts = (*(c or 0 for c in counts), *totals) if totals else tuple(c or 0 for c in counts)
    _check_tokens(sum(token_counts), limit)
    return Served(vectors, token_counts, None, _source(sources), engine)


def _check_tokens(total: int, limit: int | None) -> None:
    """``limits.max_tokens_per_request`` holds for cached inputs too (their stored counts)."""
    if limit is not None and total > limit:
        raise TooManyTokensError(total, limit)


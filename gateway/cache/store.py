"""Both tiers behind one door, the single flight of concurrent identical misses, and the counters.

Reads go memory first, then Redis for what memory lacks (a Redis hit is copied into memory);
writes go to both. A key being computed by one request is *in flight*: a second request that
misses it waits for that result instead of computing it again (:meth:`CacheStore.claim`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from gateway.cache.entry import CacheEntry
from gateway.cache.memory import MemoryTier
from gateway.cache.redis_tier import RedisTier
from gateway.config import CacheSettings
from gateway.contract import RetryableError

__all__ = ["CacheStats", "CacheStore", "Tier"]

Tier = Literal["memory", "redis"]


@dataclass(slots=True)
class CacheStats:
    """Counts since start (read by the metrics collector and /info)."""

    hits: dict[str, int] = field(default_factory=lambda: {"memory": 0, "redis": 0})
    misses: dict[str, int] = field(default_factory=lambda: {"memory": 0, "redis": 0})
    #: keys looked up (each key of each request once); hits / lookups is the overall hit rate
    lookups: int = 0
    #: misses that waited for another request computing the same key
    coalesced: int = 0
    #: entries written (computed by an engine and stored)
    stores: int = 0

    def hit_rate(self, tier: str | None = None) -> float | None:
        """Hits over lookups of ``tier`` (None: over all keys looked up); None before any lookup."""
        if tier is None:
            return sum(self.hits.values()) / self.lookups if self.lookups else None
        asked = self.hits[tier] + self.misses[tier]
        return self.hits[tier] / asked if asked else None


class CacheStore:
    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self.memory = MemoryTier(settings.memory_bytes) if settings.memory_bytes > 0 else None
        self.redis = (
            RedisTier(settings.redis_url, prefix=settings.key_prefix, ttl=settings.ttl,
                      timeout=settings.redis_timeout, retry_interval=settings.redis_retry_interval)
            if settings.redis_url else None
        )
        self.stats = CacheStats()
        self._flights: dict[str, asyncio.Future[CacheEntry | None]] = {}

    @property
    def enabled(self) -> bool:
        return self.memory is not None or self.redis is not None

    async def get_many(self, keys: Sequence[str]) -> list[tuple[CacheEntry, Tier] | None]:
        """Each key's entry and the tier it came from, or None."""
        self.stats.lookups += len(keys)
        found: list[tuple[CacheEntry, Tier] | None] = [None] * len(keys)
        if self.memory is not None:
            for i, key in enumerate(keys):
                entry = self.memory.get(key)
                if entry is not None:
                    found[i] = (entry, "memory")
            hits = sum(f is not None for f in found)
            self.stats.hits["memory"] += hits
            self.stats.misses["memory"] += len(keys) - hits
        if self.redis is not None:
            rest = [i for i, f in enumerate(found) if f is None]
            got = await self.redis.get_many([keys[i] for i in rest])
            promoted: list[tuple[str, CacheEntry]] = []
            for i, entry in zip(rest, got, strict=True):
                if entry is not None:
                    found[i] = (entry, "redis")
                    promoted.append((keys[i], entry))
            self.stats.hits["redis"] += len(promoted)
            self.stats.misses["redis"] += len(rest) - len(promoted)
            if self.memory is not None:
                self.memory.put_many(promoted)
        return found

    async def put_many(self, items: Sequence[tuple[str, CacheEntry]]) -> None:
        if not items:
            return
        self.stats.stores += len(items)
        if self.memory is not None:
            self.memory.put_many(items)
        if self.redis is not None:
            await self.redis.put_many(items)

    # ------------------------------------------------------------------ single flight

    def claim(self, keys: Sequence[str]) -> tuple[list[str], dict[str, asyncio.Future[CacheEntry | None]]]:
        """Split missed ``keys`` (distinct) into those this caller must compute (now in flight:
        it must :meth:`land` them) and the futures of those another request is computing."""
        mine: list[str] = []
        theirs: dict[str, asyncio.Future[CacheEntry | None]] = {}
        loop = asyncio.get_running_loop()
        for key in keys:
            flight = self._flights.get(key)
            if flight is None:
                self._flights[key] = loop.create_future()
                mine.append(key)
            else:
                theirs[key] = flight
        self.stats.coalesced += len(theirs)
        return mine, theirs

    def land(self, keys: Sequence[str], entries: dict[str, CacheEntry]) -> None:
        """End the flights of ``keys``: waiters get the entry, or None (compute it yourselves)
        for a key without one (the computation failed, or its result may not be cached)."""
        for key in keys:
            flight = self._flights.pop(key, None)
            if flight is not None and not flight.done():
                flight.set_result(entries.get(key))

    # ------------------------------------------------------------------ admin

    async def flush(self) -> dict[str, int]:
        """Drop every entry: this process's memory tier and the prefix's keys on Redis."""
        out = {"memory": self.memory.clear() if self.memory is not None else 0, "redis": 0}
        if self.redis is not None:
            try:
                out["redis"] = await self.redis.flush()
            except Exception as exc:  # noqa: BLE001 - any Redis failure: the admin gets a 503 saying so
                raise RetryableError(f"the shared cache (Redis) could not be flushed: {type(exc).__name__}: {exc}",
                                     code="cache_unavailable") from exc
        return out

    async def aclose(self) -> None:
        self.land(list(self._flights), {})
        if self.redis is not None:
            await self.redis.aclose()

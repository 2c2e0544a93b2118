"""The in-process tier: an LRU bounded in bytes (cachetools' ``LRUCache`` sized by entry bytes).

Per process and lost on restart; no TTL (an entry is a fact about its key, never stale: the key
holds the engine's identity). Runs on the event loop only, so it needs no lock.
"""

from __future__ import annotations

from collections.abc import Iterable

from cachetools import LRUCache

from gateway.cache.entry import CacheEntry

__all__ = ["MemoryTier"]


class _CountingLRU(LRUCache[str, CacheEntry]):
    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize=maxsize, getsizeof=lambda e: e.nbytes)
        self.evictions = 0

    def popitem(self) -> tuple[str, CacheEntry]:
        item = super().popitem()
        self.evictions += 1
        return item


class MemoryTier:
    """``max_bytes`` of entries, least recently used evicted first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lru = _CountingLRU(max_bytes)

    def get(self, key: str) -> CacheEntry | None:
        return self._lru.get(key)

    def put_many(self, items: Iterable[tuple[str, CacheEntry]]) -> None:
        for key, entry in items:
            if entry.nbytes <= self.max_bytes:  # bigger than the whole tier: not kept
                self._lru[key] = entry

    def clear(self) -> int:
        n = len(self._lru)
        self._lru.clear()
        return n

    @property
    def entries(self) -> int:
        return len(self._lru)

    @property
    def bytes(self) -> int:
        return int(self._lru.currsize)

    @property
    def evictions(self) -> int:
        return self._lru.evictions

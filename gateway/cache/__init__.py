"""The embedding cache: engine results kept by a key that makes a wrong hit impossible.

What is stored is what an engine returned (full-dimension, un-normalised fp32 vectors and their
token counts), so one entry serves every ``dimensions``, ``normalized`` and ``embedding_type``
through the usual post-processing. Two tiers: an in-process LRU bounded in bytes and an optional
shared Redis with a TTL; concurrent identical misses are computed once. See docs/cache.md.

* :mod:`~gateway.cache.key` — the fingerprint (pure);
* :mod:`~gateway.cache.entry` — an entry and its bytes on Redis;
* :mod:`~gateway.cache.memory`, :mod:`~gateway.cache.redis_tier` — the tiers;
* :mod:`~gateway.cache.store` — both tiers, single flight, counters;
* :mod:`~gateway.cache.lookup` — one job: split hits and misses, compute the misses, merge;
* :mod:`~gateway.cache.policy` — a request's opt-out, from its headers.
"""

from gateway.cache.entry import CacheEntry
from gateway.cache.key import KEY_VERSION, KeyScope
from gateway.cache.lookup import Computed, Served, serve_cached
from gateway.cache.policy import CacheMode, cache_mode
from gateway.cache.store import CacheStore, CacheStats

__all__ = [
    "KEY_VERSION",
    "CacheEntry",
    "CacheMode",
    "CacheStats",
    "CacheStore",
    "Computed",
    "KeyScope",
    "Served",
    "cache_mode",
    "serve_cached",
]

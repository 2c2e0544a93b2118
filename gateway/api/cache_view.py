"""The embedding cache's typed view, for ``GET /info`` (configuration, sizes, counts)."""

from __future__ import annotations

from gateway.api.schemas import CacheInfo, CacheTierInfo
from gateway.cache import CacheStore

__all__ = ["cache_view"]


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def cache_view(cache: CacheStore) -> CacheInfo:
    st, mem, redis = cache.stats, cache.memory, cache.redis
    tiers = {
        tier: CacheTierInfo(hits=st.hits[tier], misses=st.misses[tier], hit_rate=_rate(st.hit_rate(tier)))
        for tier, on in (("memory", mem is not None), ("redis", redis is not None)) if on
    }
    return CacheInfo(
        enabled=cache.enabled,
        memory_bytes=mem.max_bytes if mem is not None else 0,
        memory_used_bytes=mem.bytes if mem is not None else 0,
        memory_entries=mem.entries if mem is not None else 0,
        evictions=mem.evictions if mem is not None else 0,
        redis_url=redis.url if redis is not None else None,
        redis_up=redis.healthy if redis is not None else None,
        redis_errors=redis.errors if redis is not None else 0,
        ttl=cache.settings.ttl if redis is not None else None,
        lookups=st.lookups,
        hit_rate=_rate(st.hit_rate()),
        coalesced=st.coalesced,
        tiers=tiers,
    )

"""``GET /info``'s body: what this server runs and accepts, from the snapshot and the cache.

Why its own module: the body is TEI's ``/info`` keys (so TEI tooling reads it) and the gateway's
own, derived from the engines' capabilities, the settings' limits and the cache's counters; the
route only picks the model. Views that mirror an internal type are built from it by
:func:`~gateway.api.wire_view.wire_view` (shared fields by name), never copied field by field.
"""

from __future__ import annotations

from gateway import __version__
from gateway.api.ops.protocol import (
    CacheInfo,
    CacheTierInfo,
    EngineInfo,
    Info,
    LimitsInfo,
    ModelInfo,
    TeiEmbeddingModel,
    TeiModelType,
)
from gateway.api.wire_view import wire_view
from gateway.cache import CacheStore
from gateway.contract import EngineCapabilities, route_key, task_of_key
from gateway.pool import Snapshot, Supervisor
from gateway.serving.service import resolve_model

__all__ = ["cache_view", "engine_info", "info_view"]


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def cache_view(cache: CacheStore) -> CacheInfo:
    """The embedding cache's configuration, sizes and counts."""
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


def engine_info(caps: EngineCapabilities, model: str | None = None) -> EngineInfo:
    """An engine's capabilities as ``/info`` shows them: every field both have, the sets as sorted lists."""
    return wire_view(
        EngineInfo, caps, tasks=sorted(route_key(t) for t in caps.tasks), outputs=sorted(caps.outputs), served_model=model
    )


def info_view(snap: Snapshot, cache: CacheStore, model: str, served: str | None, supervisor: Supervisor) -> Info:
    """``model``'s view (``served``: the name the request used, if any), with every model listed
    (and its vector spaces: of the engine each task goes to first)."""
    s = snap.settings
    assert snap.catalog is not None
    caps = snap.capabilities(model)
    # the model as its parity reference (the exact engine) describes it, else its first engine
    reference = snap.references.get(model) if snap.references is not None else None
    main_name = next(iter(n for n in (reference, *caps) if n in caps))
    main = caps[main_name]
    max_input = min(c.max_input_tokens for c in caps.values())
    served_name = served or (snap.catalog.default if model == resolve_model(snap, None).model else model)
    return wire_view(
        Info,
        main,  # the main engine's model, revision, dimensions, dtype, device, max_batch_requests
        model_id=main.model or served_name,
        model_sha=main.revision,
        model_dtype=main.dtype or "float32",
        served_model_name=served_name,
        model_type=TeiModelType(embedding=TeiEmbeddingModel(pooling="mean")),
        max_concurrent_requests=s.limits.max_concurrent_requests,
        max_input_length=max_input,
        max_batch_tokens=main.max_batch_tokens or max_input,
        max_client_batch_size=s.limits.max_inputs_per_request,
        auto_truncate=s.api.auto_truncate,
        tokenization_workers=main.tokenization_workers or 1,
        version=__version__,
        engines={n: engine_info(c, snap.model_of(n)) for n, c in snap.capabilities().items()},
        routes=snap.model_routes(model),
        limits=wire_view(LimitsInfo, s.limits, max_input_tokens=max_input),
        api_keys_required=bool(s.auth.client_keys()),
        cache=cache_view(cache),
        models={
            m: ModelInfo(
                engines=snap.engines_of(m),
                routes=snap.model_routes(m),
                reference=snap.references.get(m) if snap.references is not None else None,
                resident_bytes=sum(c.resident_bytes or 0 for c in snap.capabilities(m).values()),
                spaces={
                    key: supervisor.space(snap, names[0], task_of_key(key), None, True).id
                    for key, names in snap.model_routes(m).items() if names
                },
            )
            for m in snap.models
        },
    )

"""The cache's parts on their own: the key (pure), an entry's bytes, the memory tier's byte bound,
the request opt-out, and the Redis tier against a real redis-server (killed mid-use)."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from gateway.cache.entry import CacheEntry, EntryFormatError
from gateway.cache.key import KeyScope, chunked_key, input_key, late_key
from gateway.cache.memory import MemoryTier
from gateway.cache.policy import cache_mode
from gateway.cache.redis_tier import RedisTier, redact_url
from gateway.contract import ChunkingRule, InvalidRequestError, Task
from tests.support.redis import RedisServer, redis_server  # noqa: F401 - fixture

SCOPE = KeyScope("engine_hf|sha256:aa|float32|cpu", Task.RETRIEVAL_QUERY, False)


def test_the_key_changes_with_everything_that_changes_the_vector() -> None:
    base = input_key(SCOPE, "what is the capital of France?")
    assert base == input_key(KeyScope(SCOPE.identity, SCOPE.task, False), "what is the capital of France?")
    others = {
        input_key(KeyScope("engine_hf|sha256:bb|float32|cpu", Task.RETRIEVAL_QUERY, False), "what is the capital of France?"),
        input_key(KeyScope("engine_hf|sha256:aa|bfloat16|cpu", Task.RETRIEVAL_QUERY, False), "what is the capital of France?"),
        input_key(KeyScope(SCOPE.identity, Task.RETRIEVAL_PASSAGE, False), "what is the capital of France?"),
        input_key(KeyScope(SCOPE.identity, None, False), "what is the capital of France?"),
        input_key(KeyScope(SCOPE.identity, Task.RETRIEVAL_QUERY, True), "what is the capital of France?"),
        input_key(SCOPE, "what is the capital of France? "),  # exact text: no whitespace folding
        input_key(SCOPE, "What is the capital of France?"),
    }
    assert base not in others and len(others) == 7


def test_token_ids_late_chunks_and_chunked_documents_have_their_own_keys() -> None:
    assert input_key(SCOPE, (1, 2, 3)) != input_key(SCOPE, "1 2 3")
    assert input_key(SCOPE, (1, 2, 3)) != input_key(SCOPE, (1, 2, 4))
    late = late_key(SCOPE, ["a b.", "c d."])
    assert late != late_key(SCOPE, ["c d.", "a b."])  # each chunk's vector depends on the whole document
    assert late != late_key(SCOPE, ["a b.", "c d.", "e."])
    assert late != input_key(SCOPE, "a b.")
    doc = "One. Two. Three."
    by_one, by_two = chunked_key(SCOPE, ChunkingRule("sentences", 1), doc), chunked_key(SCOPE, ChunkingRule("sentences", 2), doc)
    assert by_one != by_two and by_one != chunked_key(SCOPE, ChunkingRule("tokens", 1), doc)
    assert by_one != chunked_key(SCOPE, ChunkingRule("sentences", 1), doc + " Four.")


def test_an_entry_survives_its_bytes_bit_for_bit() -> None:
    vectors = np.random.default_rng(0).standard_normal((3, 17)).astype(np.float32)
    vectors[0, 0] = np.float32(1e-42)  # a subnormal: no float formatting on the way
    entry = CacheEntry(vectors, (5, 6, 7), ((0, 3), (4, 9), (10, 12)))
    back = CacheEntry.from_bytes(entry.to_bytes())
    assert back.vectors.tobytes() == vectors.tobytes() and back.vectors.dtype == np.float32
    assert back.token_counts == (5, 6, 7) and back.spans == entry.spans
    with pytest.raises(EntryFormatError):
        CacheEntry.from_bytes(entry.to_bytes()[:-4])
    with pytest.raises(EntryFormatError):
        CacheEntry.from_bytes(b"garbage")


def test_the_memory_tier_is_bounded_in_bytes_and_counts_evictions() -> None:
    def entry(dim: int) -> CacheEntry:
        return CacheEntry(np.zeros((1, dim), np.float32), (3,))

    size = entry(256).nbytes
    tier = MemoryTier(3 * size)
    tier.put_many([(f"k{i}", entry(256)) for i in range(3)])
    assert tier.entries == 3 and tier.bytes == 3 * size and tier.evictions == 0
    assert tier.get("k0") is not None  # k0 now most recently used: k1 goes first
    tier.put_many([("k3", entry(256))])
    assert tier.get("k1") is None and tier.get("k0") is not None and tier.evictions == 1
    assert tier.bytes <= tier.max_bytes
    tier.put_many([("huge", entry(10_000))])  # bigger than the tier: not kept, nothing evicted for it
    assert tier.get("huge") is None and tier.entries == 3
    assert tier.clear() == 3 and tier.bytes == 0


def test_the_request_opt_out_is_read_from_its_headers() -> None:
    assert cache_mode(None, None) == "use"
    assert cache_mode("off", None) == "off" and cache_mode(" OFF ", None) == "off"
    assert cache_mode(None, "no-store") == "off"
    assert cache_mode(None, "max-age=0, no-cache") == "refresh"
    assert cache_mode("use", "no-cache") == "use"  # the explicit header wins
    with pytest.raises(InvalidRequestError) as err:
        cache_mode("sometimes", None)
    assert err.value.param == "x-embed-cache"


def test_redis_urls_lose_their_password_for_display() -> None:
    assert redact_url("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("redis://user:s3cret@cache/1") == "redis://user:***@cache/1"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"


def test_the_redis_tier_round_trips_with_a_ttl_and_survives_redis_dying(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    async def scenario() -> None:
        tier = RedisTier(redis_server.url, prefix="t:", ttl=60, timeout=0.5, retry_interval=0.2)
        entry = CacheEntry(np.arange(8, dtype=np.float32).reshape(1, 8), (4,))
        await tier.put_many([("a", entry)])
        got = await tier.get_many(["a", "b"])
        assert got[1] is None and got[0] is not None and got[0].vectors.tobytes() == entry.vectors.tobytes()
        ttl = await tier._client.ttl("t:a")
        assert 0 < ttl <= 60
        await tier._client.set("other", b"kept")  # a flush deletes only the prefix's keys
        assert await tier.flush() == 1
        assert await tier._client.get("other") == b"kept"

        redis_server.kill()
        with caplog.at_level(logging.WARNING, logger="gateway.cache.redis_tier"):
            for _ in range(3):
                assert await tier.get_many(["a"]) == [None]
                await tier.put_many([("a", entry)])
                await asyncio.sleep(0.25)  # past the retry interval: each call tries Redis again
        assert tier.errors >= 3 and not tier.healthy
        failures = [r for r in caplog.records if "failed" in r.getMessage()]
        assert len(failures) == 1  # logged once per outage, counted every time
        await tier.aclose()

    asyncio.run(scenario())


def test_a_reply_to_a_call_sent_before_an_outage_does_not_end_it() -> None:
    """Calls in flight when Redis dies can still answer after the first failure was seen; only a
    call sent after it may say Redis is back (else one outage flaps and is logged twice)."""
    import time

    tier = RedisTier("redis://127.0.0.1:1/0", prefix="p:", ttl=None, timeout=0.1, retry_interval=5.0)
    sent_before = time.monotonic() - 1.0
    tier._failed("read", OSError("connection refused"))
    tier._ok(sent_before)
    assert not tier.healthy
    tier._ok(time.monotonic())
    assert tier.healthy

"""The cache bench's Mem0-like workload: seeded, one fact per request, the asked share repeated."""

from __future__ import annotations

from gateway.bench.cache_bench import mem0_workload


def count(text: str) -> int:
    return len(text.split()) + 2


def test_the_mem0_workload_repeats_the_asked_share_of_facts() -> None:
    reqs = mem0_workload(400, count, repeat=0.7, seed=1)
    assert reqs == mem0_workload(400, count, repeat=0.7, seed=1)
    assert all(len(r.texts) == 1 and r.task == "text-matching" and r.tokens == (count(r.texts[0]),) for r in reqs)
    distinct = len({r.texts for r in reqs})
    assert 0.6 <= 1 - distinct / len(reqs) <= 0.8  # the repeated share, within sampling noise
    assert len({r.texts for r in mem0_workload(100, count, repeat=0.0)}) == 100


def test_without_a_url_the_cache_bench_starts_its_own_redis_and_stops_it() -> None:
    import shutil

    import pytest
    import redis

    from gateway.bench.cache_bench import _redis

    if shutil.which("redis-server") is None:  # tests/run.sh installs it; a bare pytest run may lack it
        pytest.fail("redis-server is not on PATH; run the suite with tests/run.sh")
    with _redis(None) as url:
        assert url is not None
        client = redis.Redis.from_url(url)
        assert client.ping() and client.set("k", b"v") and client.get("k") == b"v"
    with pytest.raises(redis.ConnectionError):
        client.ping()

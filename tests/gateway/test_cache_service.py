"""The cache in the real app over HTTP, with scripted engines (their calls counted) and a real
redis-server: hits per tier, the header, partial requests, single flight, opt-out, fallbacks that
change engines, the token limit, flush, /info, metrics, and Redis dying under the app."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np

from gateway.config import load_settings
from gateway.contract import EngineUnavailableError
from tests.support.fakes import FakeEngine
from tests.support.redis import RedisServer, redis_server  # noqa: F401 - fixture
from tests.support.server import live_server

ADMIN = {"authorization": "Bearer s3cret"}


def settings(**cache: Any):  # type: ignore[no-untyped-def]
    return load_settings(cache=cache, auth={"admin_key": "s3cret"})


def embed(url: str, inputs: list[str], headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    r = httpx.post(url + "/v1/embeddings", json={"input": inputs, **body}, headers=headers or {}, timeout=30)
    assert r.status_code == 200, r.text
    return r


def sent(engine: FakeEngine) -> list[str]:
    return [x for job in engine.calls for x in job.inputs if isinstance(x, str)]


def test_a_repeat_is_a_memory_hit_and_the_same_bytes() -> None:
    engine = FakeEngine("e", identity="fake-v1")
    with live_server(settings(), {"e": engine}) as s:
        first = embed(s.url, ["likes coffee", "lives in Paris"])
        again = embed(s.url, ["likes coffee", "lives in Paris"])
        mixed = embed(s.url, ["lives in Paris", "has a dog", "likes coffee"])
    assert first.headers["x-embed-cache"] == "miss" and again.headers["x-embed-cache"] == "memory"
    assert again.content == first.content and again.headers["x-embed-engine"] == "e"
    assert mixed.headers["x-embed-cache"] == "partial"
    assert sent(engine) == ["likes coffee", "lives in Paris", "has a dog"]  # only the miss went out
    by_text = {t: d["embedding"] for t, d in zip(["lives in Paris", "has a dog", "likes coffee"], mixed.json()["data"])}
    assert by_text["likes coffee"] == first.json()["data"][0]["embedding"]
    assert mixed.json()["usage"]["total_tokens"] == 5 + 5 + 4


def test_one_entry_serves_every_dimension_normalisation_and_encoding() -> None:
    engine = FakeEngine("e", identity="fake-v1")
    variants = [{"dimensions": d, "normalized": n, "embedding_type": t}
                for d in (None, 16) for n in (True, False) for t in ("float", "base64", "binary", "ubinary")]
    with live_server(settings(), {"e": engine}) as s:
        uncached = [embed(s.url, ["a fact"], {"x-embed-cache": "off"}, **v) for v in variants]
        assert all(r.headers["x-embed-cache"] == "off" for r in uncached)
        embed(s.url, ["a fact"])  # fills the entry
        cached = [embed(s.url, ["a fact"], **v) for v in variants]
    assert all(r.headers["x-embed-cache"] == "memory" for r in cached)
    for u, c in zip(uncached, cached, strict=True):
        assert c.json() == u.json()
    assert len(engine.calls) == len(variants) + 1


def test_concurrent_identical_misses_are_computed_once() -> None:
    engine = FakeEngine("e", identity="fake-v1", delay=0.5)
    with live_server(settings(), {"e": engine}) as s:
        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=s.url, timeout=30) as client:
                return await asyncio.gather(*(
                    client.post("/v1/embeddings", json={"input": ["same fact", f"own {i}"] if i % 2 else ["same fact"]})
                    for i in range(8)
                ))

        rs = asyncio.run(burst())
        info = httpx.get(s.url + "/info").json()["cache"]
    assert all(r.status_code == 200 for r in rs)
    assert sent(engine).count("same fact") == 1
    assert sorted(x for x in sent(engine) if x.startswith("own")) == [f"own {i}" for i in (1, 3, 5, 7)]
    first = {r.json()["data"][0]["embedding"].__repr__() for r in rs}
    assert len(first) == 1
    assert info["coalesced"] >= 1


def test_opt_out_and_refresh() -> None:
    engine = FakeEngine("e", identity="fake-v1")
    with live_server(settings(), {"e": engine}) as s:
        assert embed(s.url, ["x"], {"x-embed-cache": "off"}).headers["x-embed-cache"] == "off"
        assert embed(s.url, ["x"]).headers["x-embed-cache"] == "miss"  # "off" stored nothing
        assert embed(s.url, ["x"], {"cache-control": "no-store"}).headers["x-embed-cache"] == "off"
        assert embed(s.url, ["x"], {"cache-control": "no-cache"}).headers["x-embed-cache"] == "miss"
        assert embed(s.url, ["x"]).headers["x-embed-cache"] == "memory"
        bad = httpx.post(s.url + "/v1/embeddings", json={"input": "x"}, headers={"x-embed-cache": "maybe"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-embed-cache"
    assert len(engine.calls) == 4


def test_an_engine_without_an_identity_is_never_cached_and_the_cache_can_be_off() -> None:
    anonymous = FakeEngine("e")
    with live_server(settings(), {"e": anonymous}) as s:
        assert [embed(s.url, ["x"]).headers["x-embed-cache"] for _ in range(2)] == ["off", "off"]
    assert len(anonymous.calls) == 2
    known = FakeEngine("e", identity="fake-v1")
    with live_server(settings(memory_bytes=0), {"e": known}) as s:
        assert [embed(s.url, ["x"]).headers["x-embed-cache"] for _ in range(2)] == ["off", "off"]
        assert httpx.get(s.url + "/info").json()["cache"]["enabled"] is False
    assert len(known.calls) == 2


def test_a_fallback_to_another_engine_never_mixes_engines_in_one_response() -> None:
    down = {"now": False}
    first = FakeEngine("first", identity="first-v1",
                       fail_with=lambda job: EngineUnavailableError("down", engine="first") if down["now"] else None)
    second = FakeEngine("second", identity="second-v1")
    with live_server(settings(), {"first": first, "second": second}) as s:
        embed(s.url, ["known"])  # cached under first's identity
        down["now"] = True
        r = embed(s.url, ["known", "new"])
        assert r.headers["x-embed-engine"] == "second" and r.headers["x-embed-cache"] == "miss"
        assert sorted(sent(second)) == ["known", "new"]  # the hit was recomputed on the engine that served
        down["now"] = False
        again = embed(s.url, ["new"])
    # second's vectors were stored under second's identity, not first's: first computes "new" itself
    assert again.headers["x-embed-cache"] == "miss" and sent(first)[-1] == "new"


def test_cached_inputs_count_toward_the_token_limit() -> None:
    engine = FakeEngine("e", identity="fake-v1")
    s_ = load_settings(limits={"max_tokens_per_request": 12})
    with live_server(s_, {"e": engine}) as s:
        embed(s.url, ["one two three four"])  # 6 tokens
        embed(s.url, ["five six seven eight"])
        r = httpx.post(s.url + "/v1/embeddings", json={"input": ["one two three four", "five six seven eight", "x"]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_tokens"


def test_flush_info_and_metrics() -> None:
    engine = FakeEngine("e", identity="fake-v1")
    with live_server(settings(memory_bytes=3 * 400), {"e": engine}) as s:
        for text in ["a", "b", "c", "d", "a", "d"]:
            embed(s.url, [text])
        info = httpx.get(s.url + "/info").json()["cache"]
        metrics = httpx.get(s.url + "/metrics").text
        assert httpx.post(s.url + "/admin/cache/flush").status_code == 401
        flushed = httpx.post(s.url + "/admin/cache/flush", headers=ADMIN)
        after = embed(s.url, ["d"])
    assert info["enabled"] and info["memory_bytes"] == 1200 and info["redis_url"] is None
    assert info["memory_entries"] == 3 and info["evictions"] == 2 and 0 < info["memory_used_bytes"] <= 1200
    assert info["tiers"]["memory"] == {"hits": 1, "misses": 5, "hit_rate": round(1 / 6, 6)}
    assert 'embed_gateway_cache_hits_total{tier="memory"} 1.0' in metrics
    assert 'embed_gateway_cache_misses_total{tier="memory"} 5.0' in metrics
    assert "embed_gateway_cache_evictions_total 2.0" in metrics
    assert 'embed_gateway_cache_hit_rate{tier="all"}' in metrics
    assert flushed.status_code == 200 and flushed.json() == {"status": "flushed", "memory": 3, "redis": 0}
    assert after.headers["x-embed-cache"] == "miss"


def test_two_apps_share_redis_and_redis_dying_fails_no_request(redis_server: RedisServer) -> None:  # noqa: F811
    one, two = FakeEngine("e", identity="fake-v1"), FakeEngine("e", identity="fake-v1")
    cfg = settings(redis_url=redis_server.url, redis_retry_interval=0.2)
    with live_server(cfg, {"e": one}) as a, live_server(cfg, {"e": two}) as b:
        filled = embed(a.url, ["shared fact", "another"])
        shared = embed(b.url, ["shared fact", "another"])
        assert shared.headers["x-embed-cache"] == "redis" and shared.content == filled.content
        assert embed(b.url, ["shared fact"]).headers["x-embed-cache"] == "memory"  # promoted into b's memory
        assert two.calls == []
        other = FakeEngine("e", identity="fake-v2")  # another checkpoint behind the same Redis
        with live_server(cfg, {"e": other}) as c:
            assert embed(c.url, ["shared fact"]).headers["x-embed-cache"] == "miss"
        assert len(other.calls) == 1

        redis_server.kill()
        statuses = [embed(a.url, [f"after {i}"]).headers["x-embed-cache"] for i in range(5)]
        assert statuses == ["miss"] * 5
        info = httpx.get(a.url + "/info").json()["cache"]
        assert info["redis_up"] is False and info["redis_errors"] >= 1
        metrics = httpx.get(a.url + "/metrics").text
        assert "embed_gateway_cache_redis_up 0.0" in metrics
        flush = httpx.post(a.url + "/admin/cache/flush", headers=ADMIN)
        assert flush.status_code == 503
    assert np.array_equal(
        np.array(filled.json()["data"][0]["embedding"]), np.array(shared.json()["data"][0]["embedding"])
    )



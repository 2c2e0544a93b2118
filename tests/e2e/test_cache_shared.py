"""The cache as operators run it: two `embed-gateway serve` processes on the tiny checkpoint sharing
one real redis-server. Cached and uncached responses are bit-identical for every task, dimension,
normalisation and encoding (late chunking too); another task, checkpoint or dtype never hits an
old entry; Redis killed under load fails no request."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from engine_hf.tools.synthetic import TINY, write_checkpoints
from tests.support.process import GatewayProcess
from tests.support.redis import RedisServer, redis_server  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[2]
TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching", "none"]
TEXTS = ["The user likes dark roast coffee.", "Lives in Paris, works at a bakery.", "Allergic to peanuts"]
VARIANTS: list[dict[str, Any]] = [
    {"dimensions": d, "normalized": n, "embedding_type": t}
    for d in (None, 32) for n in (True, False) for t in ("float", "base64", "binary", "ubinary")
] + [{"embedding_type": ["float", "ubinary"], "dimensions": 16}]
OFF = {"x-embed-cache": "off"}


def _config(tmp_path: Path, model: Path, name: str) -> Path:
    config = tmp_path / f"{name}.yaml"
    shipped = (REPO / "configs" / "gateway.yaml").read_text()
    config.write_text(shipped.replace("model: jinaai/jina-embeddings-v3", f"model: {model}"))
    return config


def _start(tmp_path: Path, model: Path, name: str, redis: RedisServer, **env: str) -> GatewayProcess:
    return GatewayProcess(_config(tmp_path, model, name), tmp_path / f"{name}.log", env={
        "EMBED_GATEWAY_CACHE__REDIS_URL": redis.url, "EMBED_GATEWAY_ENGINES__HF__DEVICE": "cpu",
        "EMBED_GATEWAY_ENGINES__HF__THREADS": "1", "EMBED_GATEWAY_AUTH__ADMIN_KEY": "k", **env,
    })


def _ready(*procs: GatewayProcess) -> None:
    for p in procs:
        p.wait_for("ready", lambda p=p: httpx.get(p.url + "/ready", timeout=5).status_code == 200, timeout=180)


def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None, path: str = "/v1/embeddings") -> httpx.Response:
    r = httpx.post(url + path, json=body, headers=headers or {}, timeout=60)
    assert r.status_code == 200, r.text
    return r


def test_two_gateways_share_redis_bit_identically(original_dir: Path, tmp_path: Path, redis_server: RedisServer) -> None:  # noqa: F811
    a = _start(tmp_path, original_dir, "a", redis_server)
    b = _start(tmp_path, original_dir, "b", redis_server)
    try:
        _ready(a, b)
        for task in TASKS:
            for i, variant in enumerate(VARIANTS):
                body = {"input": TEXTS, "task": task, **variant}
                uncached = _post(a.url, body, OFF)
                filled = _post(a.url, body)
                shared = _post(b.url, body)
                # a new task never hits the entries of another task (same texts, same engine)
                expected = ("miss", "redis") if i == 0 else ("memory", "memory")
                assert (filled.headers["x-embed-cache"], shared.headers["x-embed-cache"]) == expected, (task, variant)
                assert uncached.headers["x-embed-cache"] == "off"
                assert filled.content == uncached.content == shared.content, (task, variant)

        # late chunking: the chunks of one document, and a document cut by a rule
        late = {"input": ["First part of a document.", "Its second part.", "The end."], "late_chunking": True,
                "task": "retrieval.passage"}
        chunked = {"input": "One sentence here. Another one there! And a third?", "chunking": {"type": "sentences", "size": 1},
                   "task": "retrieval.passage", "dimensions": 32}
        for body, path in ((late, "/v1/embeddings"), (chunked, "/v1/chunk-embeddings")):
            uncached = _post(a.url, body, OFF, path)
            filled, shared = _post(a.url, body, path=path), _post(b.url, body, path=path)
            assert (filled.headers["x-embed-cache"], shared.headers["x-embed-cache"]) == ("miss", "redis")
            assert filled.content == uncached.content == shared.content
        # the same chunks, not late-chunked: their own entries, not the document's
        plain = _post(a.url, {**late, "late_chunking": False})
        assert plain.headers["x-embed-cache"] == "miss" and plain.content != filled.content
        assert b.admin()  # admin key works (the flush route below uses it)
        info = httpx.get(b.url + "/info", timeout=10).json()["cache"]
        assert info["tiers"]["redis"]["hits"] >= len(TASKS) and info["redis_up"] is True
    finally:
        a.stop()
        b.stop()


def test_another_checkpoint_or_dtype_never_hits_and_redis_dying_fails_nothing(
    original_dir: Path, tmp_path: Path, redis_server: RedisServer  # noqa: F811
) -> None:
    other_dir = write_checkpoints(tmp_path / "other", TINY, layouts=("original",), seed=4321)["original"]
    a = _start(tmp_path, original_dir, "a", redis_server, EMBED_GATEWAY_CACHE__REDIS_RETRY_INTERVAL="0.5")
    other = _start(tmp_path, other_dir, "other", redis_server)
    bf16 = _start(tmp_path, original_dir, "bf16", redis_server, EMBED_GATEWAY_ENGINES__HF__DTYPE="bfloat16")
    try:
        _ready(a, other, bf16)
        body = {"input": TEXTS, "task": "retrieval.query", "normalized": False}
        first = _post(a.url, body)
        assert first.headers["x-embed-cache"] == "miss"
        assert _post(a.url, body).headers["x-embed-cache"] == "memory"
        for proc in (other, bf16):
            got = _post(proc.url, body)
            assert got.headers["x-embed-cache"] == "miss", proc.log_path.name
            assert got.content == _post(proc.url, body, OFF).content  # its own vectors...
            assert got.content != first.content  # ...not the first checkpoint's / dtype's

        # Redis dies under load: every request still answers (from memory or the engine)
        errors: list[str] = []
        stop = threading.Event()

        def load(worker: int) -> None:
            i = 0
            while not stop.is_set():
                text = TEXTS[i % 3] if i % 2 else f"fact {worker}-{i}"
                r = httpx.post(a.url + "/v1/embeddings", json={"input": [text], "task": "text-matching"}, timeout=60)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text}")
                i += 1

        threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        stop.wait(1.5)
        # the outage starts here (a Redis call that timed out under this load before is another one)
        logged_before_kill = len(a.log())
        redis_server.kill()
        stop.wait(2.5)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        metrics = httpx.get(a.url + "/metrics", timeout=10).text
        errors_line = next(line for line in metrics.splitlines() if line.startswith("embed_gateway_cache_redis_errors_total"))
        assert float(errors_line.split()[-1]) >= 1
        outage_log = a.log()[logged_before_kill:]
        assert outage_log.count("redis cache read failed") + outage_log.count("redis cache write failed") == 1
        flush = httpx.post(a.url + "/admin/cache/flush", headers={"authorization": "Bearer k"}, timeout=10)
        assert flush.status_code == 503  # an admin's flush says Redis is down
    finally:
        for p in (a, other, bf16):
            p.stop()

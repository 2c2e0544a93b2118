"""Shadow A/B over real HTTP: the real HF engine (tiny jina-embeddings-v3) as the primary, shadowed
by itself and by a real BGE-M3 (tiny, published layout); a slow and a failing candidate (faults a
real engine cannot be made to produce on demand) show that the primary never waits or fails."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import Settings, load_settings
from gateway.contract import EmbedJob, EngineError
from gateway.engines import build_engine
from tests.support.fakes import FakeEngine
from tests.support.server import LiveServer, live_server

ADMIN = {"authorization": "Bearer s3cret"}
TEXTS = [f"note {i}: the user {verb} {thing} on {day}" for i, (verb, thing, day) in enumerate(
    (v, t, d) for v in ("likes", "hates", "orders", "drinks") for t in ("coffee", "green tea", "oat milk", "cocoa")
    for d in ("mondays", "weekends", "holidays")
)]  # 48 distinct texts


def _upstream(name: str) -> dict[str, Any]:
    """An engine entry the builder below replaces with a fake (the config needs a kind)."""
    return {"engines": {name: {"kind": "openai", "url": "http://127.0.0.1:9/v1", "model": name, "dimensions": 64}}}


@pytest.fixture(scope="module")
def fakes() -> dict[str, FakeEngine]:
    def broken(job: EmbedJob) -> EngineError:
        return EngineError("the candidate is broken", engine="broken")

    return {"slow": FakeEngine("slow", delay=0.5), "broken": FakeEngine("broken", fail_with=broken)}


@pytest.fixture(scope="module")
def server(original_dir: Path, m3_dir: Path, fakes: dict[str, FakeEngine]) -> Iterator[LiveServer]:
    settings = load_settings(
        engines={"hf": {"model": str(original_dir), "device": "cpu", "max_input_tokens": 64}},
        models={
            "jina-embeddings-v3": {
                "default": True,
                # every request of the model is also embedded by the model itself...
                "shadow": {"model": "jina-embeddings-v3", "fraction": 1.0, "window": 32},
                "aliases": {
                    # ...but those of these aliases by another candidate
                    "vs-m3": {"task": "retrieval.passage", "shadow": {"model": "bge-m3", "fraction": 1.0}},
                    "vs-slow": {"task": "separation",
                                "shadow": {"model": "slow", "fraction": 1.0, "queue": 2, "concurrency": 1}},
                    "vs-broken": {"task": "classification", "shadow": {"model": "broken", "fraction": 1.0}},
                    "unshadowed": {"task": "text-matching", "shadow": {"model": "bge-m3", "fraction": 0.0}},
                },
            },
            "bge-m3": {"engines": {"bge": {"kind": "bge-m3", "model": str(m3_dir), "device": "cpu",
                                           "max_input_tokens": 64}}},
            "slow": _upstream("slow"),
            "broken": _upstream("broken"),
        },
        auth={"admin_key": "s3cret"},
        cache={"memory_bytes": 0},
    )

    def builder(name: str, s: Settings) -> Any:
        return fakes[name] if name in fakes else build_engine(name, s)

    with live_server(settings, builder=builder) as s:
        yield s


def _shadows(s: LiveServer) -> dict[tuple[str, str], dict[str, Any]]:
    got = httpx.get(s.url + "/admin/shadow", headers=ADMIN, timeout=30)
    assert got.status_code == 200, got.text
    return {(p["primary"], p["candidate"]): p for p in got.json()["shadows"]}


def _until(s: LiveServer, key: tuple[str, str], done: Any, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        pair = _shadows(s).get(key)
        if pair is not None and done(pair):
            return pair
        assert time.monotonic() < deadline, f"shadow {key} did not get there: {pair}"
        time.sleep(0.1)


def _embed(s: LiveServer, model: str, texts: list[str]) -> httpx.Response:
    return httpx.post(s.url + "/v1/embeddings", json={"model": model, "input": texts}, timeout=60)


def test_the_model_against_itself_agrees_fully_and_another_model_clearly_less(server: LiveServer) -> None:
    for i in range(0, len(TEXTS), 4):
        assert _embed(server, "jina-embeddings-v3", TEXTS[i:i + 4]).status_code == 200
        assert _embed(server, "vs-m3", TEXTS[i:i + 4]).status_code == 200
    self_pair = _until(server, ("jina-embeddings-v3", "jina-embeddings-v3"), lambda p: p["shadowed"] == 12)
    other = _until(server, ("jina-embeddings-v3", "bge-m3"), lambda p: p["shadowed"] == 12)

    assert self_pair["sampled"] == 12 and self_pair["dropped"] == self_pair["failed"] == 0
    (lane,) = self_pair["lanes"]
    assert lane["task"] == "text-matching" and lane["texts"] == 32  # the window keeps the last 32 texts
    assert lane["agreement"]["top_k_overlap"] == 1.0 and lane["agreement"]["rank_correlation"] == pytest.approx(1.0)

    (lane,) = other["lanes"]
    assert lane["task"] == "retrieval.passage" and lane["texts"] == 48
    print("jina-embeddings-v3 against bge-m3:", lane["agreement"])
    assert lane["agreement"]["top_k_overlap"] < 0.9
    assert lane["agreement"]["rank_correlation"] < 0.9
    assert other["texts"] == 48 and other["candidate_tokens"] > 48 and other["candidate_p50_ms"] > 0

    metrics = {s.name: s for f in text_string_to_metric_families(httpx.get(server.url + "/metrics").text)
               for s in f.samples if s.labels.get("candidate") == "bge-m3"}
    assert metrics["embed_gateway_shadow_texts_total"].value == 48
    # one observation per candidate request; samples that wait together share one
    assert 1 <= metrics["embed_gateway_shadow_candidate_duration_seconds_count"].value <= 12
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(server.url + "/metrics").text)}
    overlaps = {s.labels["candidate"]: s.value for s in families["embed_gateway_shadow_agreement"].samples
                if s.labels["measure"] == "top_k_overlap"}
    assert overlaps["jina-embeddings-v3"] == 1.0
    assert overlaps["bge-m3"] == pytest.approx(lane["agreement"]["top_k_overlap"], abs=1e-6)


def test_a_slow_candidate_never_slows_the_primary_and_its_overflow_is_dropped(
    server: LiveServer, fakes: dict[str, FakeEngine]
) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(partial(_embed, server, "vs-slow"), [[t] for t in TEXTS[:16]]))
    took = time.monotonic() - started
    assert all(a.status_code == 200 for a in answers)
    assert took < 0.5 * 16 / 2  # the candidate alone needs 0.5 s a request, one at a time
    pair = _until(server, ("jina-embeddings-v3", "slow"),
                  lambda p: p["shadowed"] + p["dropped"] + p["failed"] == p["sampled"] == 16, timeout=30)
    assert pair["dropped"] >= 10 and pair["failed"] == 0  # a queue of 2 behind one worker
    # what waited together went in one candidate request
    assert len(fakes["slow"].calls) < pair["shadowed"] and sum(len(c.inputs) for c in fakes["slow"].calls) == pair["texts"]


def test_a_failing_candidate_is_counted_and_never_seen_by_the_client(server: LiveServer) -> None:
    for text in TEXTS[:5]:
        got = _embed(server, "vs-broken", [text])
        assert got.status_code == 200 and len(got.json()["data"]) == 1
    pair = _until(server, ("jina-embeddings-v3", "broken"), lambda p: p["failed"] == 5)
    assert pair["shadowed"] == 0 and pair["lanes"] == []


def test_fraction_zero_and_non_comparable_requests_are_never_shadowed(server: LiveServer) -> None:
    assert _embed(server, "unshadowed", TEXTS[:3]).status_code == 200
    assert ("jina-embeddings-v3", "bge-m3") not in _shadows(server) or _shadows(server)[
        ("jina-embeddings-v3", "bge-m3")]["sampled"] == 12  # what the first test sent, nothing more
    assert _embed(server, "vs-m3", TEXTS[:1]).status_code == 200  # comparable: sampled
    before = _until(server, ("jina-embeddings-v3", "bge-m3"), lambda p: p["queued"] == 0)["sampled"]
    chunked = httpx.post(server.url + "/v1/embeddings", json={"model": "vs-m3", "input": TEXTS[:2],
                                                               "late_chunking": True}, timeout=60)
    sparse_less = httpx.post(server.url + "/v1/embeddings", json={"model": "vs-m3", "input": TEXTS[:2],
                                                                   "return_multivector": True}, timeout=60)
    assert chunked.status_code == 200, chunked.text
    assert sparse_less.status_code == 400  # jina has no multi-vector output: refused, not shadowed
    assert _shadows(server)[("jina-embeddings-v3", "bge-m3")]["sampled"] == before


def test_the_shadow_view_is_admin_only_and_a_shadow_of_an_unknown_model_fails_the_config(server: LiveServer) -> None:
    assert httpx.get(server.url + "/admin/shadow", timeout=30).status_code == 401
    with pytest.raises(ValueError, match="the shadow of 'jina-embeddings-v3' names 'nope'"):
        load_settings(models={"jina-embeddings-v3": {"shadow": {"model": "nope"}}})
    with pytest.raises(ValueError, match="fraction"):
        load_settings(models={"jina-embeddings-v3": {"shadow": {"model": "jina-embeddings-v3", "fraction": 1.5}}})


def test_a_reload_that_changes_the_shadow_starts_it_afresh_and_retires_the_old(
    original_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"

    def write(window: int) -> None:
        config.write_text(
            f"engines:\n  hf:\n    model: {original_dir}\n    device: cpu\n    max_input_tokens: 64\n"
            "auth:\n  admin_key: s3cret\ncache:\n  memory_bytes: 0\n"
            "models:\n  jina-embeddings-v3:\n    default: true\n"
            f"    shadow: {{model: jina-embeddings-v3, fraction: 1.0, window: {window}}}\n"
        )

    write(32)
    with live_server(load_settings(config), reload_settings=lambda: load_settings(config)) as s:
        key = ("jina-embeddings-v3", "jina-embeddings-v3")
        for text in TEXTS[:3]:
            assert _embed(s, "jina-embeddings-v3", [text]).status_code == 200
        assert _until(s, key, lambda p: p["shadowed"] == 3)["lanes"][0]["texts"] == 3
        write(16)
        assert httpx.post(s.url + "/admin/reload", headers=ADMIN, timeout=60).status_code == 200
        assert _embed(s, "jina-embeddings-v3", [TEXTS[3]]).status_code == 200
        _until(s, key, lambda p: p["shadowed"] == 1)
        (pair,) = httpx.get(s.url + "/admin/shadow", headers=ADMIN, timeout=30).json()["shadows"]
        assert pair["sampled"] == 1 and pair["lanes"][0]["texts"] == 1  # the old pair is gone, the new one counts afresh

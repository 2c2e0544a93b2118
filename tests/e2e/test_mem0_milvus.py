"""Real Mem0 on the real gateway with a real Milvus Lite file: the path our users run.

Mem0 2.2.1's ``openai`` embedder talks to the app over HTTP (uvicorn on loopback, the HF engine on
the 1024-wide random checkpoint); Milvus Lite 3.2.2 stores the vectors; no LLM (``infer=False``).

About the texts: the checkpoint has random weights, so it knows no meaning. What a random encoder
still sees is shared tokens, so each query below is its memory's content words reordered, with
other punctuation — a "paraphrase" such a model can recognise — and no memory shares a content
word with another. Checked beforehand against the independent reference for seeds 0, 1 and 1234
(41 of 42 query/dimension cases rank the target first; seed 1234, used here, all of them).
Independently of that fixture property, every search is also compared with the ranking and
scores computed from the reference's own vectors, so the test checks the pipeline, not luck.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from gateway.config import load_settings
from gateway.contract import Task
from gateway.integrations.mem0 import GatewayEmbedder, reload_milvus_collection, use_gateway_embedder
from tests.support.mem0 import expected_score, mem0_config, stored_rows
from tests.support.recording import RecordingEngine
from tests.support.server import LiveServer, live_server

ALICE = {
    "coffee": "likes coffee in the morning",
    "peanuts": "allergic to peanuts, vegetarian",
    "tokyo": "lives in tokyo, works at company",
    "doctor": "doctor appointment in march",
}
BOB = {
    "jazz": "jazz music and piano",
    "paris": "travel to paris on weekend",
    # Mem0's openai embedder replaces newlines with spaces before embedding (a pitfall to know)
    "tea": "tea in the\nevening",
}
QUERIES = {
    "coffee": "morning coffee likes",
    "peanuts": "vegetarian, peanuts allergic",
    "tokyo": "company works, tokyo lives",
    "doctor": "march doctor appointment",
    "jazz": "piano, jazz music",
    "paris": "weekend paris travel",
    "tea": "evening tea",
}
ALIAS_TASK = "text-matching"  # what the default alias jina-embeddings-v3 means


@pytest.fixture(scope="module")
def recorder(wide_dir: Path) -> RecordingEngine:
    from engine_hf import HFEngine

    settings = load_settings(engines={"hf": {"model": str(wide_dir), "device": "cpu"}})
    return RecordingEngine(HFEngine(settings.engines.hf))


@pytest.fixture(scope="module")
def gateway(wide_dir: Path, recorder: RecordingEngine) -> Iterator[LiveServer]:
    # the cache off: the tests read which tasks reached the engine (the recorder)
    settings = load_settings(engines={"hf": {"model": str(wide_dir), "device": "cpu"}}, cache={"memory_bytes": 0})
    with live_server(settings, {"hf": recorder}) as server:
        yield server


def add_memories(memory: Any, user: str, texts: dict[str, str]) -> dict[str, str]:
    """One add() with one message per fact; returns key -> memory id."""
    out = memory.add([{"role": "user", "content": t} for t in texts.values()], user_id=user, infer=False)
    ids = {r["memory"]: r["id"] for r in out["results"]}
    assert set(ids) == set(texts.values()) and all(r["event"] == "ADD" for r in out["results"])
    return {key: ids[text] for key, text in texts.items()}


def ranked(reference: Any, query: str, texts: dict[str, str], dims: int, q_task: str, d_task: str) -> list[tuple[str, float]]:
    """Keys by cosine of the reference's own vectors, best first, with the cosine."""
    q = reference.encode([query], q_task, dims, True)[0]
    d = reference.encode([t.replace("\n", " ") for t in texts.values()], d_task, dims, True)
    cos = d @ q
    return sorted(zip(texts, (float(c) for c in cos), strict=True), key=lambda kv: -kv[1])


def check_search(memory: Any, reference: Any, user: str, texts: dict[str, str], ids: dict[str, str], *,
                 dims: int, metric: str, q_task: str, d_task: str, query: str) -> list[dict[str, Any]]:
    results = memory.search(query, filters={"user_id": user}, top_k=10, threshold=0.0)["results"]
    by_id = {v: k for k, v in ids.items()}
    assert all(r["user_id"] == user for r in results), "a search leaked another user's memories"
    want = ranked(reference, query, texts, dims, q_task, d_task)
    got_keys = [by_id[r["id"]] for r in results]
    assert got_keys == [k for k, _ in want], f"Mem0's order {got_keys} != cosine order {want}"
    for r, (_, cos) in zip(results, want, strict=True):
        assert r["score"] == pytest.approx(expected_score(metric, cos), abs=2e-4), (metric, r["score"], cos)
    return results


@pytest.mark.parametrize("metric", ["COSINE", "L2"])
@pytest.mark.parametrize("dims", [1024, 256])
def test_mem0_symmetric_add_search_update_delete(gateway, wide_reference, tmp_path, dims, metric) -> None:  # type: ignore[no-untyped-def]
    from mem0 import Memory

    memory = Memory.from_config(mem0_config(gateway.url, tmp_path, dims=dims, metric=metric))
    alice = add_memories(memory, "alice", ALICE)
    bob = add_memories(memory, "bob", BOB)

    # listing is per user
    assert {m["memory"] for m in memory.get_all(filters={"user_id": "alice"})["results"]} == set(ALICE.values())
    assert {m["memory"] for m in memory.get_all(filters={"user_id": "bob"})["results"]} == set(BOB.values())

    # what Milvus holds: the configured dimension, and exactly the gateway's vector for the alias's task
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused")  # base64 path, as most clients use
    for user, texts, ids in (("alice", ALICE, alice), ("bob", BOB, bob)):
        rows = stored_rows(memory, user)
        assert set(rows) == set(ids.values())
        for key, mem_id in ids.items():
            text, vector = rows[mem_id]
            assert text == texts[key]  # stored verbatim, newline included
            assert vector.shape == (dims,)
            flat = text.replace("\n", " ")
            served = np.asarray(sdk.embeddings.create(model="jina-embeddings-v3", input=flat, dimensions=dims)
                                .data[0].embedding, dtype=np.float32)
            np.testing.assert_allclose(vector, served, atol=1e-6)
            np.testing.assert_allclose(vector, wide_reference.encode([flat], ALIAS_TASK, dims, True)[0], atol=1e-4)

    # search: the paraphrase's memory first, the rest in cosine order, scores as the metric defines
    for user, texts, ids in (("alice", ALICE, alice), ("bob", BOB, bob)):
        for key in texts:
            results = check_search(memory, wide_reference, user, texts, ids, dims=dims, metric=metric,
                                   q_task=ALIAS_TASK, d_task=ALIAS_TASK, query=QUERIES[key])
            assert results[0]["id"] == ids[key], f"{QUERIES[key]!r} should find {texts[key]!r} first"

    # a user never sees another user's memory, even for a query made for it
    results = memory.search(QUERIES["tea"], filters={"user_id": "alice"}, top_k=10, threshold=0.0)["results"]
    assert bob["tea"] not in {r["id"] for r in results}

    # update: new text, new vector, found by its own paraphrase
    memory.update(alice["coffee"], text="likes tea in the morning")
    rows = stored_rows(memory, "alice")
    assert rows[alice["coffee"]][0] == "likes tea in the morning"
    np.testing.assert_allclose(
        rows[alice["coffee"]][1], wide_reference.encode(["likes tea in the morning"], ALIAS_TASK, dims, True)[0], atol=1e-4
    )
    alice_now = {**ALICE, "coffee": "likes tea in the morning"}
    results = check_search(memory, wide_reference, "alice", alice_now, alice, dims=dims, metric=metric,
                           q_task=ALIAS_TASK, d_task=ALIAS_TASK, query="morning tea likes")
    assert results[0]["id"] == alice["coffee"]

    # delete: gone from listing, search and Milvus; the other user untouched
    memory.delete(alice["doctor"])
    listed = memory.get_all(filters={"user_id": "alice"})["results"]
    assert {m["id"] for m in listed} == {alice["coffee"], alice["peanuts"], alice["tokyo"]}
    results = memory.search(QUERIES["doctor"], filters={"user_id": "alice"}, top_k=10, threshold=0.0)["results"]
    assert alice["doctor"] not in {r["id"] for r in results} and len(results) == 3
    assert alice["doctor"] not in stored_rows(memory, "alice")
    assert set(stored_rows(memory, "bob")) == set(bob.values())


@pytest.mark.parametrize(("dims", "metric"), [(256, "COSINE"), (1024, "L2")])
def test_mem0_asymmetric_embedder_maps_actions_to_tasks(gateway, recorder, wide_reference, tmp_path, dims, metric) -> None:  # type: ignore[no-untyped-def]
    from mem0 import Memory

    config = mem0_config(gateway.url, tmp_path, dims=dims, metric=metric)
    memory = use_gateway_embedder(Memory.from_config(config), GatewayEmbedder.from_mem0_config(config))

    recorder.clear()
    alice = add_memories(memory, "alice", ALICE)
    assert recorder.tasks_seen() == [Task.RETRIEVAL_PASSAGE] * len(ALICE)
    rows = stored_rows(memory, "alice")
    for key, mem_id in alice.items():
        assert rows[mem_id][1].shape == (dims,)
        np.testing.assert_allclose(
            rows[mem_id][1], wide_reference.encode([ALICE[key]], "retrieval.passage", dims, True)[0], atol=1e-4
        )

    # searches go out as retrieval.query; Mem0's ranking is the query-vs-passage cosine ranking.
    # (Random weights cannot show that asymmetric retrieval finds better matches: only the real
    # model can. What is checked here is that the right adapter reaches each side.)
    recorder.clear()
    for key in ALICE:
        check_search(memory, wide_reference, "alice", ALICE, alice, dims=dims, metric=metric,
                     q_task="retrieval.query", d_task="retrieval.passage", query=QUERIES[key])
    assert set(recorder.tasks_seen()) == {Task.RETRIEVAL_QUERY}

    recorder.clear()
    memory.update(alice["tokyo"], text="lives in paris, works at company")
    assert recorder.tasks_seen() == [Task.RETRIEVAL_PASSAGE]
    np.testing.assert_allclose(
        stored_rows(memory, "alice")[alice["tokyo"]][1],
        wide_reference.encode(["lives in paris, works at company"], "retrieval.passage", dims, True)[0], atol=1e-4,
    )
    memory.delete(alice["peanuts"])
    assert len(memory.get_all(filters={"user_id": "alice"})["results"]) == 3


def test_milvus_lite_bm25_scores_are_negated_so_mem0_search_is_semantic_only(gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Mem0 2.2 creates a BM25 sparse index and adds keyword scores to its ranking. Milvus Lite
    3.2.2 builds and searches that index, but returns BM25 scores negated (its internal
    smaller-is-better distance); Mem0 keeps only positive keyword scores, so on Lite the hybrid
    part contributes nothing and search is purely semantic (the scores asserted above).
    Milvus server (and Lite 2.5.1 with pymilvus 2.6) returns positive BM25 scores. If this test
    fails, Milvus Lite changed: update docs/mem0.md ("BM25 on Milvus Lite")."""
    from mem0 import Memory

    memory = Memory.from_config(mem0_config(gateway.url, tmp_path, dims=256, metric="COSINE"))
    ids = add_memories(memory, "alice", ALICE)
    desc = memory.vector_store.client.describe_collection(memory.vector_store.collection_name)
    assert {f["name"] for f in desc["fields"]} >= {"id", "vectors", "metadata", "text", "sparse"}
    hits = memory.vector_store.keyword_search("peanuts", top_k=5, filters={"user_id": "alice"})
    assert hits is not None and [h.id for h in hits] == [ids["peanuts"]]
    assert all(h.score < 0 for h in hits)


def test_unset_embedding_dims_breaks_a_smaller_collection(gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The pitfall docs/mem0.md warns about: without embedding_dims Mem0 sends no ``dimensions``,
    the gateway returns the full 1024, and a 256-dim collection refuses the insert."""
    from mem0 import Memory

    config = mem0_config(gateway.url, tmp_path, dims=256, metric="COSINE")
    del config["embedder"]["config"]["embedding_dims"]
    memory = Memory.from_config(config)
    with pytest.raises(Exception, match="(?i)dim"):
        memory.add([{"role": "user", "content": ALICE["coffee"]}], user_id="alice", infer=False)
    with pytest.raises(ValueError, match="embedding_model_dims"):
        use_gateway_embedder(memory, GatewayEmbedder(gateway.url, dimensions=1024))


def test_reopening_after_a_crash_needs_a_reload(gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A process using Mem0 + Milvus Lite is killed (SIGKILL) after adding a memory; Mem0 in a new
    process then fails every search until the collection is loaded again."""
    from mem0 import Memory

    config = mem0_config(gateway.url, tmp_path, dims=256, metric="COSINE")
    script = (
        "import json, os, sys; from mem0 import Memory;"
        "m = Memory.from_config(json.loads(sys.argv[1]));"
        f"m.add([{{'role': 'user', 'content': {ALICE['coffee']!r}}}], user_id='alice', infer=False);"
        "os.kill(os.getpid(), 9)"
    )
    out = subprocess.run([sys.executable, "-c", script, json.dumps(config)], capture_output=True, text=True, timeout=120)
    assert out.returncode == -9, out.stderr
    memory = Memory.from_config(config)
    with pytest.raises(Exception, match="load"):
        memory.search(QUERIES["coffee"], filters={"user_id": "alice"})
    results = reload_milvus_collection(memory).search(QUERIES["coffee"], filters={"user_id": "alice"})["results"]
    assert [r["memory"] for r in results] == [ALICE["coffee"]]

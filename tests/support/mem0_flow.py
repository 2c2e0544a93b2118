"""The Mem0 round trip every vector store is put through (tests/e2e/test_mem0_*.py): add, list,
the stored vectors against the gateway's, search, update, delete. ``rows(user)`` reads what the
store holds with the store's own client (memory id -> (text, vector)), never through Mem0."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import openai

from tests.e2e.test_mem0_milvus import ALIAS_TASK, ALICE, BOB, QUERIES, add_memories, check_search

__all__ = ["round_trip"]

Rows = Callable[[str], dict[str, tuple[str, np.ndarray]]]


def round_trip(memory: Any, rows: Rows, reference: Any, gateway_url: str, *, dims: int, metric: str = "COSINE",
               search: Callable[..., Any] = check_search) -> None:
    alice = add_memories(memory, "alice", ALICE)
    bob = add_memories(memory, "bob", BOB)
    assert {m["memory"] for m in memory.get_all(filters={"user_id": "alice"})["results"]} == set(ALICE.values())
    assert {m["memory"] for m in memory.get_all(filters={"user_id": "bob"})["results"]} == set(BOB.values())

    # what the store holds: exactly the gateway's vector for the alias's task, at the configured width
    sdk = openai.OpenAI(base_url=gateway_url + "/v1", api_key="unused")
    for user, texts, ids in (("alice", ALICE, alice), ("bob", BOB, bob)):
        held = rows(user)
        assert set(held) == set(ids.values())
        for key, mem_id in ids.items():
            text, vector = held[mem_id]
            assert text == texts[key] and vector.shape == (dims,)
            flat = text.replace("\n", " ")
            served = np.asarray(sdk.embeddings.create(model="jina-embeddings-v3", input=flat, dimensions=dims)
                                .data[0].embedding, dtype=np.float32)
            cos = float(vector @ served / (np.linalg.norm(vector) * np.linalg.norm(served)))
            assert cos >= 0.99999, (key, cos)
            np.testing.assert_allclose(vector, served, atol=1e-5)
            np.testing.assert_allclose(vector, reference.encode([flat], ALIAS_TASK, dims, True)[0], atol=1e-4)

    for user, texts, ids in (("alice", ALICE, alice), ("bob", BOB, bob)):
        for key in texts:
            results = search(memory, reference, user, texts, ids, dims=dims, metric=metric,
                             q_task=ALIAS_TASK, d_task=ALIAS_TASK, query=QUERIES[key])
            assert results[0]["id"] == ids[key], f"{QUERIES[key]!r} should find {texts[key]!r} first"
    results = memory.search(QUERIES["tea"], filters={"user_id": "alice"}, top_k=10, threshold=0.0)["results"]
    assert bob["tea"] not in {r["id"] for r in results}

    memory.update(alice["coffee"], text="likes tea in the morning")
    held = rows("alice")
    assert held[alice["coffee"]][0] == "likes tea in the morning"
    np.testing.assert_allclose(held[alice["coffee"]][1],
                               reference.encode(["likes tea in the morning"], ALIAS_TASK, dims, True)[0], atol=1e-4)
    results = search(memory, reference, "alice", {**ALICE, "coffee": "likes tea in the morning"}, alice, dims=dims,
                     metric=metric, q_task=ALIAS_TASK, d_task=ALIAS_TASK, query="morning tea likes")
    assert results[0]["id"] == alice["coffee"]

    memory.delete(alice["doctor"])
    listed = memory.get_all(filters={"user_id": "alice"})["results"]
    assert {m["id"] for m in listed} == {alice["coffee"], alice["peanuts"], alice["tokyo"]}
    results = memory.search(QUERIES["doctor"], filters={"user_id": "alice"}, top_k=10, threshold=0.0)["results"]
    assert alice["doctor"] not in {r["id"] for r in results} and len(results) == 3
    assert alice["doctor"] not in rows("alice")
    assert set(rows("bob")) == set(bob.values())

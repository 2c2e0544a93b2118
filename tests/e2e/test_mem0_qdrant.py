"""Real Mem0 on the real gateway with Qdrant (qdrant-client's local mode, a folder): docs/mem0.md's
Qdrant recipe. Mem0 2.2.1's ``openai`` embedder calls the app over HTTP (the 1024-wide random
checkpoint, as in test_mem0_milvus.py, whose texts and checks this reuses); no LLM (``infer=False``).

Mem0's Qdrant store adds BM25 keyword scores only when fastembed is installed (it is not here, nor
in the mem0 extra), so search is semantic: the score is Qdrant's cosine, checked against the
reference's own vectors.
"""

from __future__ import annotations

from pathlib import Path

from gateway.integrations.mem0 import GatewayEmbedder, use_gateway_embedder
from tests.e2e.test_mem0_milvus import ALICE, QUERIES, add_memories, check_search, gateway, recorder  # noqa: F401
from tests.support.mem0 import mem0_qdrant_config, qdrant_rows
from tests.support.mem0_flow import round_trip


def test_mem0_qdrant_add_search_update_delete(gateway, wide_reference, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from mem0 import Memory

    dims = 256
    memory = Memory.from_config(mem0_qdrant_config(gateway.url, tmp_path, dims=dims))
    info = memory.vector_store.client.get_collection("memories")
    assert info.config.params.vectors.size == dims and info.config.params.vectors.distance.value == "Cosine"
    assert memory.vector_store.keyword_search("coffee") is None  # no fastembed: semantic scores only
    round_trip(memory, lambda user: qdrant_rows(memory, user), wide_reference, gateway.url, dims=dims)
    memory.vector_store.client.close()


def test_mem0_qdrant_asymmetric_embedder(gateway, recorder, wide_reference, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from mem0 import Memory

    from gateway.contract import Task

    config = mem0_qdrant_config(gateway.url, tmp_path, dims=1024)
    memory = use_gateway_embedder(Memory.from_config(config), GatewayEmbedder.from_mem0_config(config))
    recorder.clear()
    alice = add_memories(memory, "alice", ALICE)
    assert recorder.tasks_seen() == [Task.RETRIEVAL_PASSAGE] * len(ALICE)
    held = qdrant_rows(memory, "alice")
    import numpy as np

    for key, mem_id in alice.items():
        np.testing.assert_allclose(held[mem_id][1], wide_reference.encode([ALICE[key]], "retrieval.passage", 1024,
                                                                          True)[0], atol=1e-4)
    recorder.clear()
    for key in ALICE:
        check_search(memory, wide_reference, "alice", ALICE, alice, dims=1024, metric="COSINE",
                     q_task="retrieval.query", d_task="retrieval.passage", query=QUERIES[key])
    assert set(recorder.tasks_seen()) == {Task.RETRIEVAL_QUERY}
    memory.vector_store.client.close()

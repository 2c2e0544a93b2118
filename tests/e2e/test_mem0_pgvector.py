"""Real Mem0 on the real gateway with Postgres + pgvector (tests/support/postgres.py: a real server):
docs/mem0.md's pgvector recipe. Mem0 2.2.1's pgvector store needs psycopg 3 with psycopg-pool (or
psycopg2); the texts and checks are test_mem0_milvus.py's; no LLM (``infer=False``).

Mem0's pgvector store has keyword search (Postgres full text on the lemmatised memory), so
``memory.search`` ranks by the mean of the cosine and a keyword score whenever a query shares a
word with a memory. The vector side is therefore checked where it is pure: the store's own search
(``vector_store.search``, cosine via ``<=>``) ranks and scores exactly as the reference's vectors
do, and ``memory.search`` finds each paraphrase's memory first.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_mem0_milvus import gateway, ranked, recorder  # noqa: F401 - fixtures
from tests.support.mem0 import mem0_pgvector_config, pgvector_rows
from tests.support.mem0_flow import round_trip
from tests.support.postgres import PostgresServer, postgres_server  # noqa: F401 - fixture

_db = itertools.count()


def vector_side_search(memory: Any, reference: Any, user: str, texts: dict[str, str], ids: dict[str, str], *,
                       dims: int, metric: str, q_task: str, d_task: str, query: str) -> list[dict[str, Any]]:
    """The store's cosine ranking and scores against the reference's; then Mem0's hybrid result."""
    vector = memory.embedding_model.embed(query, "search")
    hits = memory.vector_store.search(query=query, vectors=vector, top_k=10, filters={"user_id": user})
    by_id = {v: k for k, v in ids.items()}
    want = ranked(reference, query, texts, dims, q_task, d_task)
    assert [by_id[h.id] for h in hits] == [k for k, _ in want]
    for h, (_, cos) in zip(hits, want, strict=True):
        assert h.score == pytest.approx(max(0.0, cos), abs=2e-4)
    results = memory.search(query, filters={"user_id": user}, top_k=10, threshold=0.0)["results"]
    assert all(r["user_id"] == user for r in results), "a search leaked another user's memories"
    assert {r["id"] for r in results} == set(ids.values())
    return results  # type: ignore[no-any-return]


def test_mem0_pgvector_add_search_update_delete(gateway, wide_reference, postgres_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from mem0 import Memory

    dims = 256
    dsn = postgres_server.database(f"mem0_{next(_db)}")
    memory = Memory.from_config(mem0_pgvector_config(gateway.url, tmp_path, dsn, dims=dims))
    round_trip(memory, lambda user: pgvector_rows(dsn, "memories", user), wide_reference, gateway.url, dims=dims,
               search=vector_side_search)
    import psycopg

    with psycopg.connect(dsn) as conn:
        kind = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                            "WHERE attrelid = 'memories'::regclass AND attname = 'vector'").fetchone()[0]
        indexes = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'memories'")]
    assert kind == f"vector({dims})"
    assert any("hnsw (vector vector_cosine_ops)" in d for d in indexes), indexes
    memory.vector_store.connection_pool.close()

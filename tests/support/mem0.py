"""Mem0 configurations for the tests: the gateway as embedder, Milvus Lite as vector store, no LLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: nothing listens here: with infer=False Mem0 never calls its LLM, and a call would fail loudly
UNUSED_LLM_URL = "http://127.0.0.1:9/v1"


def mem0_config(
    gateway_url: str,
    folder: Path,
    *,
    dims: int,
    metric: str,
    model: str = "jina-embeddings-v3",
    collection: str = "memories",
) -> dict[str, Any]:
    return {
        "embedder": {
            "provider": "openai",
            "config": {
                "model": model,
                "api_key": "unused",
                "openai_base_url": gateway_url + "/v1",
                "embedding_dims": dims,
            },
        },
        "vector_store": {
            "provider": "milvus",
            "config": {
                "url": str(folder / "milvus.db"),
                "collection_name": collection,
                "embedding_model_dims": dims,
                "metric_type": metric,
            },
        },
        "llm": {"provider": "openai", "config": {"api_key": "unused", "openai_base_url": UNUSED_LLM_URL}},
        "history_db_path": str(folder / "history.db"),
    }


def stored_rows(memory: Any, user_id: str) -> dict[str, tuple[str, np.ndarray]]:
    """memory id -> (text, vector) exactly as Milvus holds them (read with pymilvus, not via Mem0)."""
    store = memory.vector_store
    rows = store.client.query(
        collection_name=store.collection_name,
        filter=f'metadata["user_id"] == "{user_id}"',
        output_fields=["id", "vectors", "metadata"],
    )
    return {r["id"]: (r["metadata"]["data"], np.asarray(r["vectors"], dtype=np.float32)) for r in rows}


def expected_score(metric: str, cos: float) -> float:
    """Mem0's score for unit vectors: COSINE passes Milvus's similarity through; L2 maps the
    squared distance ``2 - 2cos`` to ``1 / (1 + d)`` (mem0/vector_stores/milvus.py)."""
    return cos if metric == "COSINE" else 1.0 / (1.0 + (2.0 - 2.0 * cos))


def _embedder(gateway_url: str, dims: int, model: str) -> dict[str, Any]:
    return {"provider": "openai", "config": {"model": model, "api_key": "unused",
                                             "openai_base_url": gateway_url + "/v1", "embedding_dims": dims}}


def mem0_qdrant_config(
    gateway_url: str, folder: Path, *, dims: int, model: str = "jina-embeddings-v3", collection: str = "memories"
) -> dict[str, Any]:
    """The gateway as embedder, Qdrant in qdrant-client's local mode (a folder) as vector store."""
    return {
        "embedder": _embedder(gateway_url, dims, model),
        "vector_store": {"provider": "qdrant", "config": {
            "path": str(folder / "qdrant"), "collection_name": collection, "embedding_model_dims": dims,
            "on_disk": True,
        }},
        "llm": {"provider": "openai", "config": {"api_key": "unused", "openai_base_url": UNUSED_LLM_URL}},
        "history_db_path": str(folder / "history.db"),
    }


def mem0_pgvector_config(
    gateway_url: str, folder: Path, dsn: str, *, dims: int, model: str = "jina-embeddings-v3",
    collection: str = "memories",
) -> dict[str, Any]:
    """The gateway as embedder, Postgres with pgvector (a connection string) as vector store."""
    return {
        "embedder": _embedder(gateway_url, dims, model),
        "vector_store": {"provider": "pgvector", "config": {
            "connection_string": dsn, "collection_name": collection, "embedding_model_dims": dims, "hnsw": True,
        }},
        "llm": {"provider": "openai", "config": {"api_key": "unused", "openai_base_url": UNUSED_LLM_URL}},
        "history_db_path": str(folder / "history.db"),
    }


def qdrant_rows(memory: Any, user_id: str) -> dict[str, tuple[str, np.ndarray]]:
    """memory id -> (text, vector) exactly as Qdrant holds them (read with qdrant-client, not via Mem0)."""
    from qdrant_client import models

    store = memory.vector_store
    points, _ = store.client.scroll(
        store.collection_name, limit=1000, with_vectors=True,
        scroll_filter=models.Filter(must=[models.FieldCondition(key="user_id", match=models.MatchValue(value=user_id))]),
    )
    out = {}
    for p in points:
        vec = p.vector[""] if isinstance(p.vector, dict) and "" in p.vector else p.vector
        out[str(p.id)] = (p.payload["data"], np.asarray(vec, dtype=np.float32))
    return out


def pgvector_rows(dsn: str, table: str, user_id: str) -> dict[str, tuple[str, np.ndarray]]:
    """memory id -> (text, vector) exactly as Postgres holds them (read with psycopg, not via Mem0)."""
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg import sql

    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        rows = conn.execute(sql.SQL("SELECT id, payload, vector FROM {} WHERE payload->>'user_id' = %s")
                            .format(sql.Identifier(table)), (user_id,)).fetchall()
    return {str(r[0]): (r[1]["data"], np.asarray(r[2].to_numpy(), dtype=np.float32)) for r in rows}

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

"""Mem0 on embed-gateway with Milvus Lite: add a few memories for two users, then search them.

Start a gateway first (see README.md next to this file), then:

    python docs/examples/mem0_quickstart.py                      # gateway on http://127.0.0.1:8080
    python docs/examples/mem0_quickstart.py --asymmetric         # retrieval.query / retrieval.passage
    python docs/examples/mem0_quickstart.py --gateway http://gpu-box:8080 --dims 256 --db ./memories.db

Needs: pip install 'embed-gateway[mem0]'. No LLM is used (infer=False stores each message as is).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

# Mem0 reads these when it is imported: no telemetry; keep its state folder out of $HOME here.
os.environ.setdefault("MEM0_TELEMETRY", "False")
os.environ.setdefault("MEM0_DIR", os.path.join(tempfile.gettempdir(), "mem0-quickstart"))

MEMORIES = {
    "alice": ["likes coffee in the morning", "allergic to peanuts, vegetarian", "lives in tokyo, works at company"],
    "bob": ["jazz music and piano", "travel to paris on weekend"],
}
QUESTIONS = [("alice", "morning coffee likes"), ("alice", "vegetarian, peanuts allergic"), ("bob", "weekend paris travel")]


def config(gateway: str, dims: int, db: str, metric: str) -> dict[str, object]:
    return {
        "embedder": {
            "provider": "openai",
            "config": {
                "model": "jina-embeddings-v3",         # the alias: text-matching
                "openai_base_url": gateway.rstrip("/") + "/v1",
                "api_key": "unused",                   # the gateway does not check it
                "embedding_dims": dims,                 # ALWAYS set (Mem0 assumes 1536 otherwise)
            },
        },
        "vector_store": {
            "provider": "milvus",
            "config": {
                "url": db,                              # a path ending in .db = Milvus Lite
                "collection_name": f"memories_{dims}",
                "embedding_model_dims": dims,           # the same number as embedding_dims
                "metric_type": metric,
            },
        },
        # Mem0 wants an llm section even when it never calls it (infer=False)
        "llm": {"provider": "openai", "config": {"api_key": "unused", "openai_base_url": "http://127.0.0.1:9/v1"}},
        "history_db_path": db + ".history.sqlite",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gateway", default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080"))
    p.add_argument("--dims", type=int, default=1024, help="Matryoshka size: 1024 (full), 512, 256, ...")
    p.add_argument("--db", default="./mem0-quickstart.db", help="Milvus Lite file (or http://host:19530)")
    p.add_argument("--metric", default="COSINE", choices=["COSINE", "L2", "IP"])
    p.add_argument("--asymmetric", action="store_true", help="store as retrieval.passage, search as retrieval.query")
    args = p.parse_args(argv)

    from mem0 import Memory

    from gateway.integrations.mem0 import GatewayEmbedder, reload_milvus_collection, use_gateway_embedder

    cfg = config(args.gateway, args.dims, args.db, args.metric)
    memory = reload_milvus_collection(Memory.from_config(cfg))
    if args.asymmetric:
        use_gateway_embedder(memory, GatewayEmbedder.from_mem0_config(cfg))

    for user, facts in MEMORIES.items():
        memory.delete_all(user_id=user)  # start clean on every run
        memory.add([{"role": "user", "content": fact} for fact in facts], user_id=user, infer=False)
        print(f"{user}: {len(memory.get_all(filters={'user_id': user})['results'])} memories stored")

    for user, question in QUESTIONS:
        results = memory.search(question, filters={"user_id": user}, top_k=3)["results"]
        print(f"\n{user} asks {question!r}:")
        for r in results:
            print(f"  {r['score']:.3f}  {r['memory']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Round-trip packed binary vectors through a Milvus Lite BINARY_VECTOR collection (subprocess).

Run by tests/gateway/test_milvus_binary.py with Milvus Lite 2.5 first on PYTHONPATH: Milvus Lite
3.x (what Mem0 uses) has no BINARY_VECTOR type. Reads JSON on stdin
``{"db", "dim", "vectors": [hex], "queries": [hex], "limit"}`` and prints
``{"stored": [hex by id], "hits": [[[id, distance], ...] per query]}``.
"""

from __future__ import annotations

import json
import sys

from pymilvus import DataType, MilvusClient


def main() -> None:
    req = json.load(sys.stdin)
    client = MilvusClient(req["db"])
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.BINARY_VECTOR, dim=req["dim"])
    index = client.prepare_index_params()
    index.add_index("vec", index_type="BIN_FLAT", metric_type="HAMMING")
    client.create_collection("chunks", schema=schema, index_params=index)
    vectors = [bytes.fromhex(h) for h in req["vectors"]]
    client.insert("chunks", [{"id": i, "vec": v} for i, v in enumerate(vectors)])
    rows = client.get("chunks", ids=list(range(len(vectors))), output_fields=["vec"])
    stored = {r["id"]: (r["vec"][0] if isinstance(r["vec"], list) else r["vec"]).hex() for r in rows}
    found = client.search(
        "chunks", data=[bytes.fromhex(h) for h in req["queries"]], anns_field="vec", limit=req["limit"],
        search_params={"metric_type": "HAMMING"},
    )
    hits = [[[h["id"], h["distance"]] for h in per_query] for per_query in found]
    client.close()
    print(json.dumps({"stored": [stored[i] for i in range(len(vectors))], "hits": hits}))


if __name__ == "__main__":
    main()

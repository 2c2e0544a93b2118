"""ubinary embeddings as the gateway encodes them go into a Milvus BINARY_VECTOR field unchanged,
and Milvus's HAMMING distance on them is the number of sign disagreements of the float vectors.

Milvus Lite 3.x (the one Mem0 runs on) has no BINARY_VECTOR type, so this runs on Milvus Lite 2.5,
which tests/run.sh installs beside the venv (``<venv>/milvus-lite-2.5``), in a subprocess with that
directory first on PYTHONPATH and the venv's pymilvus.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.serving.postprocess import encode_vectors, finalize
from gateway.serving.spec import OutputFormat

MILVUS_LITE_25 = Path(sys.prefix) / "milvus-lite-2.5"
SCRIPT = Path(__file__).resolve().parents[1] / "support" / "milvus_binary.py"
TEXTS = [
    "the user likes coffee in the morning",
    "the user likes tea in the evening",
    "người dùng thích cà phê",
    "用户喜欢咖啡",
    "the deadline for the project is friday",
    "dark mode is preferred",
]


def milvus_round_trip(db: Path, dim: int, vectors: list[bytes], queries: list[bytes], limit: int) -> dict:  # type: ignore[type-arg]
    assert (MILVUS_LITE_25 / "milvus_lite").is_dir(), f"{MILVUS_LITE_25} is missing: run bash tests/run.sh"
    req = {"db": str(db), "dim": dim, "vectors": [v.hex() for v in vectors], "queries": [q.hex() for q in queries],
           "limit": limit}
    env = {**os.environ, "PYTHONPATH": str(MILVUS_LITE_25)}
    out = subprocess.run([sys.executable, str(SCRIPT)], input=json.dumps(req), capture_output=True, text=True,
                         env=env, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("dimensions", [64, 32])
def test_ubinary_round_trip_through_milvus_binary_vector(reference, tmp_path: Path, dimensions: int) -> None:
    floats = finalize(reference.encode(TEXTS, "retrieval.passage", normalize=False), dimensions, True)
    wire = encode_vectors(floats, OutputFormat(("ubinary",)))  # what a client receives
    packed = [base64.b64decode(s) for s in wire]
    assert all(len(p) == dimensions // 8 for p in packed)
    result = milvus_round_trip(tmp_path / "binary.db", dimensions, packed, packed[:2], limit=len(TEXTS))
    assert result["stored"] == [p.hex() for p in packed]  # bytes unchanged
    for q, hits in enumerate(result["hits"]):
        assert hits[0] == [q, 0.0]  # a vector is its own nearest neighbour
        for i, distance in hits:
            assert distance == int(((floats[q] > 0) != (floats[i] > 0)).sum())
        assert len(hits) == len(TEXTS)

"""`embed-gateway embed` stamps the vector space it writes, and refuses another: a Milvus Lite
collection filled through one gateway refuses a run through a gateway whose weights differ (same
task, same dimensions: the silent mix this prevents), exit status 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from gateway.cli import main
from gateway.config import load_settings
from tests.support.server import live_server

pytestmark = pytest.mark.slow


def _jsonl(path: Path, ids: range) -> Path:
    path.write_text("".join(json.dumps({"id": f"r{i}", "text": f"the user likes coffee number {i}"}) + "\n" for i in ids))
    return path


def _stamp(uri: str) -> dict:  # type: ignore[type-arg]
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    try:
        props = client.describe_collection("docs").get("properties", {})
        count = client.query("docs", filter="line >= 0", output_fields=["id"])
        return {"stamp": json.loads(props["embed_gateway.stamp"]), "ids": sorted(r["id"] for r in count)}
    finally:
        client.close()


def test_a_collection_of_one_space_refuses_another_with_nothing_written(
    original_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine_hf.tools.synthetic import TINY, write_checkpoints

    other = write_checkpoints(tmp_path_factory.mktemp("tiny-b"), TINY, layouts=("original",), seed=77)["original"]
    uri = str(tmp_path / "lite.db")
    flags = ["--id-field", "id", "--dimensions", "32", "--no-progress", "--milvus", uri, "--collection", "docs"]

    def gateway(model: Path) -> object:
        return live_server(load_settings(engines={"hf": {"model": str(model), "device": "cpu", "max_input_tokens": 64}}))

    with gateway(original_dir) as a:  # type: ignore[attr-defined]
        assert main(["embed", str(_jsonl(tmp_path / "a.jsonl", range(6))), "--gateway", a.url, *flags,
                     "--create-collection"]) == 0
        space_a = httpx.post(a.url + "/v1/embeddings", json={"input": "x", "task": "retrieval.passage",
                                                             "dimensions": 32}).headers["x-embed-space"]
    first = _stamp(uri)
    assert first["stamp"]["space"] == space_a and first["stamp"]["task"] == "retrieval.passage"
    capsys.readouterr()

    with gateway(other) as b:  # type: ignore[attr-defined]
        space_b = httpx.post(b.url + "/v1/embeddings", json={"input": "x", "task": "retrieval.passage",
                                                             "dimensions": 32}).headers["x-embed-space"]
        assert space_b != space_a
        rc = main(["embed", str(_jsonl(tmp_path / "b.jsonl", range(6, 9))), "--gateway", b.url, *flags])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert space_a in err and space_b in err, err
    assert _stamp(uri) == first  # nothing written, the stamp unchanged

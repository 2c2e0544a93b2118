"""GatewayEmbedder without Mem0: imports light, maps actions to tasks, validates its config."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from gateway.config import load_settings
from gateway.contract import Task
from gateway.integrations.mem0 import DEFAULT_ACTION_TASKS, GatewayEmbedder, task_for_action, use_gateway_embedder
from tests.support.fakes import FakeEngine
from tests.support.mem0 import mem0_config
from tests.support.server import live_server


def test_imports_without_torch_fastapi_or_mem0() -> None:
    code = (
        "import sys, gateway.integrations.mem0;"
        "bad = [m for m in ('torch', 'transformers', 'fastapi', 'starlette', 'mem0') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_default_mapping_and_overrides() -> None:
    assert task_for_action("add", DEFAULT_ACTION_TASKS) == "retrieval.passage"
    assert task_for_action("update", DEFAULT_ACTION_TASKS) == "retrieval.passage"
    assert task_for_action("search", DEFAULT_ACTION_TASKS) == "retrieval.query"
    assert task_for_action(None, DEFAULT_ACTION_TASKS) == "retrieval.passage"
    with pytest.raises(ValueError, match="no task configured for Mem0 memory_action 'forget'"):
        task_for_action("forget", DEFAULT_ACTION_TASKS)
    e = GatewayEmbedder("http://127.0.0.1:1", dimensions=8, tasks={"search": "text-matching"})
    assert e.tasks == {"add": "retrieval.passage", "update": "retrieval.passage", "search": "text-matching"}
    with pytest.raises(ValueError, match="valid tasks"):
        GatewayEmbedder("http://127.0.0.1:1", dimensions=8, tasks={"search": "retrieval_query"})
    with pytest.raises(ValueError, match="unknown Mem0 memory_action"):
        GatewayEmbedder("http://127.0.0.1:1", dimensions=8, tasks={"lookup": "text-matching"})
    with pytest.raises(ValueError, match="dimensions"):
        GatewayEmbedder("http://127.0.0.1:1", dimensions=0)


def test_from_mem0_config_reads_the_openai_embedder_section(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = mem0_config("http://gw:8080", tmp_path, dims=256, metric="COSINE", model="mem0-256")
    e = GatewayEmbedder.from_mem0_config(config)
    assert (e.config.embedding_dims, e.config.model, e.client.url) == (256, "mem0-256", "http://gw:8080/v1/embeddings")
    del config["embedder"]["config"]["embedding_dims"]
    with pytest.raises(ValueError, match="1536"):
        GatewayEmbedder.from_mem0_config(config)
    with pytest.raises(ValueError, match="provider 'openai'"):
        GatewayEmbedder.from_mem0_config({"embedder": {"provider": "ollama", "config": {}}})


def test_use_gateway_embedder_refuses_a_dimension_mismatch() -> None:
    memory = SimpleNamespace(config=SimpleNamespace(vector_store=SimpleNamespace(
        config=SimpleNamespace(embedding_model_dims=1024))), embedding_model=None)
    with pytest.raises(ValueError, match="256-dim vectors but the vector store expects 1024"):
        use_gateway_embedder(memory, GatewayEmbedder("http://127.0.0.1:1", dimensions=256))
    e = GatewayEmbedder("http://127.0.0.1:1", dimensions=1024)
    assert use_gateway_embedder(memory, e).embedding_model is e


def test_each_action_reaches_the_gateway_as_its_task() -> None:
    engine = FakeEngine(dimensions=64)
    with live_server(load_settings(), {"fake": engine}) as server:
        e = GatewayEmbedder(server.url + "/v1", dimensions=24)
        added = e.embed("likes coffee\nin the morning", "add")
        searched = e.embed("coffee?", "search")
        updated = e.embed_batch(["a", "b"], "update")
        assert e.embed_batch([], "add") == []
        kept = GatewayEmbedder(server.url, dimensions=24, strip_newlines=False)
        kept.embed("two\nlines", "add")
    assert [c.task for c in engine.calls] == [Task.RETRIEVAL_PASSAGE, Task.RETRIEVAL_QUERY, Task.RETRIEVAL_PASSAGE,
                                              Task.RETRIEVAL_PASSAGE]
    assert list(engine.calls[0].inputs) == ["likes coffee in the morning"]  # newlines stripped, as Mem0 does
    assert list(engine.calls[3].inputs) == ["two\nlines"]
    assert len(added) == len(searched) == 24 and len(updated) == 2
    assert np.linalg.norm(added) == pytest.approx(1.0, abs=1e-5)

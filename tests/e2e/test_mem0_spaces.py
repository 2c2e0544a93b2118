"""Mem0 checks its collection's vector space at start: a Mem0 store filled through one gateway
refuses a gateway whose weights differ (same model name, task and dimensions), on Qdrant (local
mode) and on Postgres with pgvector (a real server)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_settings
from gateway.ingest.stamp import StampMismatchError
from gateway.integrations.mem0 import GatewayEmbedder, check_store_space, use_gateway_embedder
from tests.support.mem0 import mem0_pgvector_config, mem0_qdrant_config
from tests.support.postgres import PostgresServer, postgres_server  # noqa: F401 - fixture
from tests.support.server import live_server

pytestmark = pytest.mark.slow
DIMS = 32


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine_hf.tools.synthetic import TINY, write_checkpoints

    return write_checkpoints(tmp_path_factory.mktemp("tiny-b"), TINY, layouts=("original",), seed=55)["original"]


def _gateway(model: Path) -> Any:
    return live_server(load_settings(engines={"hf": {"model": str(model), "device": "cpu", "max_input_tokens": 64}}))


def _check(config: dict[str, Any]) -> Any:
    from mem0 import Memory

    memory = Memory.from_config(config)
    embedder = GatewayEmbedder.from_mem0_config(config)
    use_gateway_embedder(memory, embedder)
    try:
        return check_store_space(memory, embedder), memory
    except BaseException:
        embedder.close()
        raise


def _close(memory: Any) -> None:
    """Qdrant's local mode locks its folder per client: let the next Memory open it."""
    client = getattr(memory.vector_store, "client", None)
    if client is not None and hasattr(client, "close"):
        client.close()


def _refuses_another_space(make_config: Callable[[str], dict[str, Any]], original_dir: Path, other: Path) -> None:
    with _gateway(original_dir) as a:
        stamp, memory = _check(make_config(a.url))
        assert stamp.space and stamp.task == "retrieval.passage" and stamp.dimensions == DIMS
        memory.add([{"role": "user", "content": "I drink dark roast"}], user_id="u", infer=False)
        _close(memory)
        again, memory = _check(make_config(a.url))  # the same gateway: the same space, accepted
        assert again == stamp
        _close(memory)
    with _gateway(other) as b:
        with pytest.raises(StampMismatchError) as refused:
            _check(make_config(b.url))
    assert stamp.space in str(refused.value) and "Mem0 collection" in str(refused.value)


def test_mem0_on_qdrant_refuses_another_space(original_dir: Path, other_weights: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEM0_TELEMETRY", "False")
    _refuses_another_space(lambda url: mem0_qdrant_config(url, tmp_path, dims=DIMS), original_dir, other_weights)


def test_mem0_on_pgvector_refuses_another_space(original_dir: Path, other_weights: Path, tmp_path: Path,
                                                postgres_server: PostgresServer,  # noqa: F811
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEM0_TELEMETRY", "False")
    dsn = postgres_server.database("mem0_spaces")
    _refuses_another_space(lambda url: mem0_pgvector_config(url, tmp_path, dsn, dims=DIMS, collection="spaces"),
                           original_dir, other_weights)

"""Session fixtures: tiny random checkpoints (jina-embeddings-v3 in both published layouts, same
weights; BGE-M3 in its published layout)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Mem0 reads these when it is imported: no telemetry, and its ~/.mem0 state in a throw-away folder.
os.environ["MEM0_TELEMETRY"] = "False"
os.environ.setdefault("MEM0_DIR", tempfile.mkdtemp(prefix="mem0-tests-"))


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from engine_hf.tools.synthetic import TINY, write_checkpoints

    return write_checkpoints(tmp_path_factory.mktemp("tiny"), TINY, seed=1234)


@pytest.fixture(scope="session")
def original_dir(checkpoints: dict[str, Path]) -> Path:
    return checkpoints["original"]


@pytest.fixture(scope="session")
def hf_dir(checkpoints: dict[str, Path]) -> Path:
    return checkpoints["hf"]


@pytest.fixture(scope="session")
def m3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BGE-M3 checkpoint in the published layout (encoder + ``sparse_linear.pt`` +
    ``colbert_linear.pt``), read-only for the tests that serve it beside jina-embeddings-v3."""
    from engine_hf.tools.bge_m3_checkpoint import write_bge_m3_checkpoint

    return write_bge_m3_checkpoint(tmp_path_factory.mktemp("bge-m3"))


@pytest.fixture(scope="session")
def reference(original_dir: Path):  # type: ignore[no-untyped-def]
    from tests.support.reference import Reference

    return Reference(original_dir)


@pytest.fixture(scope="session")
def vllm_server(original_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """ONE real vLLM for the whole session, serving the tiny original-layout checkpoint (the same
    weights the HF engine loads from ``original_dir``). Started once (~1 min on 2 cores)."""
    from tests.support.server import free_port
    from tests.support.vllm import VLLMServer

    server = VLLMServer(original_dir, free_port(), tmp_path_factory.mktemp("vllm") / "vllm.log").start()
    try:
        yield server.wait_healthy()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def onnx_dir(original_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint exported to ONNX with the published interface (~30 s)."""
    from engine_hf.tools.onnx_export import export

    out = tmp_path_factory.mktemp("onnx")
    export(str(original_dir), out)
    return out

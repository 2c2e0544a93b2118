"""A wider random checkpoint for the Mem0 tests: the real model's 1024 dimensions.

Why not the 64-dim tiny fixture: Mem0 + Milvus should be exercised at the sizes users deploy
(1024, and a Matryoshka cut such as 256), and a wider random encoder behaves more like a bag of
tokens (less noise per token), so "the query shares its content words with one memory" reliably
ranks that memory first. Two layers and a small FFN keep it at ~15M parameters (60 MB, ~1 s to
write, milliseconds per request on CPU).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine_hf.tools.synthetic import Shape

#: hidden 1024 like jina-embeddings-v3; 16 heads x 64 like the real model
WIDE = Shape(hidden_size=1024, num_hidden_layers=2, num_attention_heads=16, intermediate_size=1024)


@pytest.fixture(scope="session")
def wide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine_hf.tools.synthetic import write_checkpoints

    return write_checkpoints(tmp_path_factory.mktemp("wide"), WIDE, layouts=("original",), seed=1234)["original"]


@pytest.fixture(scope="session")
def wide_reference(wide_dir: Path):  # type: ignore[no-untyped-def]
    from tests.support.reference import Reference

    return Reference(wide_dir)

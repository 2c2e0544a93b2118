"""The HF engine's numeric identity (the cache's key): the checkpoint's content, not its path."""

from __future__ import annotations

import re

import shutil
from pathlib import Path

from engine_hf.checkpoint import checkpoint_fingerprint


def test_the_fingerprint_follows_the_files_that_make_the_vectors(original_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(original_dir, copy)
    assert checkpoint_fingerprint(copy) == checkpoint_fingerprint(original_dir)  # content, not the path
    (copy / "README.md").write_text("notes")  # not a file that changes vectors
    (copy / ".cache").mkdir()
    (copy / ".cache" / "x.json").write_text("{}")
    assert checkpoint_fingerprint(copy) == checkpoint_fingerprint(original_dir)
    weights = next(copy.glob("*.safetensors"))
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(blob))
    assert checkpoint_fingerprint(copy) != checkpoint_fingerprint(original_dir)


def test_the_engine_identity_names_weights_and_numerics(original_dir: Path) -> None:
    import asyncio

    from engine_hf.engine import HFEngine
    from gateway.config import HFEngineSettings

    engine = HFEngine(HFEngineSettings(model=str(original_dir), device="cpu", dtype="float32"))
    assert engine.capabilities.identity is None  # not loaded: nothing can be cached yet
    asyncio.run(engine.start())
    try:
        identity = engine.capabilities.identity
    finally:
        asyncio.run(engine.aclose())
    assert identity is not None
    assert identity.startswith("engine_hf|sha256:" + checkpoint_fingerprint(original_dir))
    # the linear kernels move bits too (oneDNN vs torch's): the identity names the ones chosen
    assert re.search(r"\|float32\|kernels=(torch|onednn)\|cpu\|rowwise\|", identity), identity

"""The two-model configuration several tests serve: the tiny jina-embeddings-v3 (top-level HF
engine, the default model) beside a tiny BGE-M3 in process, the cache off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config import Settings, load_settings


def jina_and_bge_m3(original_dir: Path, m3_dir: Path, *, bge_m3: dict[str, Any] | None = None,
                    **overrides: Any) -> Settings:
    """Settings serving both; ``bge_m3`` adds keys to BGE-M3's model section (e.g. ``aliases``),
    ``overrides`` any other top-level section."""
    return load_settings(**{
        "engines": {"hf": {"model": str(original_dir), "device": "cpu", "max_input_tokens": 64}},
        "models": {
            "jina-embeddings-v3": {"default": True},
            "bge-m3": {"engines": {"bge": {"kind": "bge-m3", "model": str(m3_dir), "device": "cpu",
                                           "max_input_tokens": 64}}, **(bge_m3 or {})},
        },
        "cache": {"memory_bytes": 0},
        **overrides,
    })

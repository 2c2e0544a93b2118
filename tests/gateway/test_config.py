"""Settings: YAML file, environment overrides with __ nesting, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import load_settings
from gateway.contract import Task

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_file_loads_and_matches_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("EMBED_GATEWAY_"):
            monkeypatch.delenv(key)
    shipped = load_settings(REPO / "configs" / "gateway.yaml")
    assert shipped.model_dump() == load_settings().model_dump()


def test_env_overrides_yaml_with_nested_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "g.yaml"
    cfg.write_text(
        "engines:\n  hf:\n    model: /models/from-yaml\n    dtype: float32\n"
        "aliases:\n  mem:\n    task: retrieval.passage\n    dimensions: 256\n"
        "api:\n  default_model: mem\n"
    )
    monkeypatch.setenv("EMBED_GATEWAY_ENGINES__HF__MODEL", "/models/from-env")
    monkeypatch.setenv("EMBED_GATEWAY_SERVER__PORT", "9999")
    s = load_settings(cfg)
    assert s.engines.hf.model == "/models/from-env"  # env wins over YAML
    assert s.engines.hf.dtype == "float32"  # YAML sibling key kept
    assert s.server.port == 9999
    assert s.aliases["mem"].task is Task.RETRIEVAL_PASSAGE and s.aliases["mem"].dimensions == 256


def test_unknown_keys_and_bad_values_are_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "g.yaml"
    cfg.write_text("engines:\n  hf:\n    modle: typo\n")
    with pytest.raises(ValidationError, match="modle"):
        load_settings(cfg)
    cfg.write_text("aliases:\n  x:\n    task: nope\n")
    with pytest.raises(ValidationError, match="unknown task"):
        load_settings(cfg)
    cfg.write_text("api:\n  default_model: missing\n")
    with pytest.raises(ValidationError, match="default_model"):
        load_settings(cfg)


def test_alias_task_none_means_base_weights(tmp_path: Path) -> None:
    cfg = tmp_path / "g.yaml"
    cfg.write_text("aliases:\n  raw:\n    task: none\n  jina-embeddings-v3:\n    task: text-matching\n")
    assert load_settings(cfg).aliases["raw"].task is None

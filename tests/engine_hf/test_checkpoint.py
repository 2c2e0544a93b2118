"""Layout detection and loading errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine_hf.checkpoint import CheckpointError, describe_checkpoint, resolve_model_dir
from gateway.contract import TASKS


def test_layouts_are_detected(original_dir: Path, hf_dir: Path) -> None:
    o, h = describe_checkpoint(original_dir), describe_checkpoint(hf_dir)
    assert (o.layout, h.layout) == ("original", "hf")
    assert o.tasks == h.tasks == TASKS
    assert o.rotary_base == h.rotary_base == 20000.0
    assert o.lora_alpha / o.lora_rank == h.lora_alpha / h.lora_rank == 0.25


def test_missing_rotary_base_means_10000_like_the_original_config_class(original_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "ck"
    shutil.copytree(original_dir, copy)
    cfg = json.loads((copy / "config.json").read_text())
    del cfg["rotary_emb_base"]
    (copy / "config.json").write_text(json.dumps(cfg))
    assert describe_checkpoint(copy).rotary_base == 10000.0


def test_hf_layout_with_a_missing_adapter_serves_the_others(hf_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "ck"
    shutil.copytree(hf_dir, copy)
    shutil.rmtree(copy / "separation")
    info = describe_checkpoint(copy)
    assert [t.value for t in info.tasks] == ["retrieval.query", "retrieval.passage", "classification", "text-matching"]


def test_not_a_jina_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="not a jina-embeddings-v3 checkpoint"):
        describe_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no config.json"):
        describe_checkpoint(tmp_path / "nope")


def test_offline_hub_id_without_cache_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="cannot get model"):
        resolve_model_dir("jinaai/jina-embeddings-v3", cache_dir=str(tmp_path), local_files_only=True)


def test_hub_cache_layout_works_offline(original_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A filled Hugging Face cache (what `huggingface-cli download` leaves) loads with HF_HUB_OFFLINE=1."""
    repo = tmp_path / "models--jinaai--jina-embeddings-v3"
    snap = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(original_dir, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = resolve_model_dir("jinaai/jina-embeddings-v3", cache_dir=str(tmp_path))
    assert path == snap
    assert describe_checkpoint(path).layout == "original"

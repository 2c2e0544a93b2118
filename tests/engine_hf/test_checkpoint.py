"""Layout detection, reading base weights under either naming, and loading errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine_hf.checkpoint import CheckpointError, describe_checkpoint, resolve_model_dir
from engine_hf.tools.synthetic import HF_EXTRA_KEYS
from gateway.contract import TASKS
from tests.engine_hf.conftest import HF_VARIANTS


def test_layouts_are_detected(original_dir: Path, hf_dir: Path) -> None:
    o, h = describe_checkpoint(original_dir), describe_checkpoint(hf_dir)
    assert (o.layout, h.layout) == ("original", "hf")
    assert o.tasks == h.tasks == TASKS
    assert o.rotary_base == h.rotary_base == 20000.0
    assert o.lora_alpha / o.lora_rank == h.lora_alpha / h.lora_rank == 0.25
    # The -hf fixture is the published shape, the one a single config key would mistake for the original:
    assert h.raw_config["model_type"] == "jina_embeddings_v3"
    assert set(HF_EXTRA_KEYS) <= set(h.raw_config)
    assert h.instructions == o.instructions


def test_hf_fixture_is_written_by_transformers_and_peft(hf_dir: Path) -> None:
    """save_pretrained writes the base under the original-style names; PEFT writes one folder per task."""
    from safetensors import safe_open

    with safe_open(str(hf_dir / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert {"emb_ln.weight", "encoder.layers.0.mixer.Wqkv.weight", "encoder.layers.1.norm2.bias"} <= keys
    assert not any(".self_attn." in k or k.startswith("roberta.") for k in keys)
    for folder in ("retrieval_query", "retrieval_passage", "separation", "classification", "text_matching"):
        cfg = json.loads((hf_dir / folder / "adapter_config.json").read_text())
        assert (cfg["peft_type"], cfg["r"], cfg["lora_alpha"]) == ("LORA", 4, 1)
        with safe_open(str(hf_dir / folder / "adapter_model.safetensors"), framework="pt") as f:
            adapter_keys = set(f.keys())
        assert "base_model.model.layers.0.self_attn.q_proj.lora_A.weight" in adapter_keys
        assert "base_model.model.embeddings.word_embeddings.lora_embedding_B" in adapter_keys


@pytest.mark.parametrize("variant", HF_VARIANTS)
def test_every_hf_variant_is_detected_as_hf(hf_variants: dict[str, Path], variant: str) -> None:
    info = describe_checkpoint(hf_variants[variant])
    assert (info.layout, info.tasks, info.rotary_base) == ("hf", TASKS, 20000.0)
    assert info.instructions == describe_checkpoint(hf_variants["saved-by-transformers"]).instructions


@pytest.mark.parametrize("variant", ["saved-by-transformers", "native-names"])
def test_base_weights_under_either_naming_equal_what_transformers_loads(
    hf_variants: dict[str, Path], original_dir: Path, variant: str
) -> None:
    """Our reading of the base weights = JinaEmbeddingsV3Model.from_pretrained's, key for key, for
    both namings of the -hf layout and for the original layout (same random weights)."""
    import torch
    from transformers import JinaEmbeddingsV3Model

    from engine_hf.layouts import load_weights

    expected = JinaEmbeddingsV3Model.from_pretrained(str(hf_variants[variant]), dtype=torch.float32).state_dict()
    for path in (hf_variants[variant], original_dir):
        got = load_weights(describe_checkpoint(path)).base
        assert set(got) == set(expected)
        for key, tensor in expected.items():
            assert torch.equal(got[key], tensor), key


def test_native_names_are_transformers_mapping_and_leave_native_keys_alone() -> None:
    from engine_hf.weight_names import NativeNames

    names = NativeNames()
    assert names.keys("roberta.encoder.layers.3.mixer.Wqkv.bias") == tuple(
        f"layers.3.self_attn.{p}_proj.bias" for p in "qkv"
    )
    assert names.keys("encoder.layers.0.norm1.weight") == ("layers.0.post_attention_layernorm.weight",)
    assert names.keys("emb_ln.bias") == ("embeddings.LayerNorm.bias",)
    for native in ("layers.0.self_attn.q_proj.weight", "embeddings.LayerNorm.weight", "layers.2.post_mlp_layernorm.bias"):
        assert names.keys(native) == (native,)


def test_a_file_mixing_both_namings_of_one_weight_is_refused(hf_dir: Path) -> None:
    import torch

    from engine_hf.weight_names import NativeNames

    with pytest.raises(CheckpointError, match="two tensors map to 'embeddings.LayerNorm.weight'"):
        NativeNames().tensors({"emb_ln.weight": torch.ones(2), "embeddings.LayerNorm.weight": torch.ones(2)})


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


def _rewrite_config(path: Path, **changes: object) -> None:
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if v is not None}))


def test_tasks_declared_without_any_adapter_are_a_clear_error(original_dir: Path, tmp_path: Path) -> None:
    """An original config over base-only weights: neither stacked LoRA nor adapter folders."""
    from safetensors.torch import load_file, save_file

    copy = Path(shutil.copytree(original_dir, tmp_path / "ck"))
    state = load_file(str(copy / "model.safetensors"))
    save_file({k: v for k, v in state.items() if "lora_" not in k}, str(copy / "model.safetensors"))
    with pytest.raises(CheckpointError, match="declares tasks .* no LoRA tensors and there are no adapter folders"):
        describe_checkpoint(copy)


def test_stacked_lora_and_adapter_folders_together_are_ambiguous(original_dir: Path, hf_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(original_dir, tmp_path / "ck"))
    shutil.copytree(hf_dir / "separation", copy / "separation")
    with pytest.raises(CheckpointError, match="cannot tell which adapters to use"):
        describe_checkpoint(copy)


def test_stacked_lora_needs_lora_adaptations_to_name_the_tasks(original_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(original_dir, tmp_path / "ck"))
    _rewrite_config(copy, model_type="jina_embeddings_v3", lora_adaptations=None)
    with pytest.raises(CheckpointError, match="no lora_adaptations"):
        describe_checkpoint(copy)


def test_hf_rotary_base_follows_transformers_and_must_agree_with_the_original_key(hf_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(hf_dir, tmp_path / "ck"))
    _rewrite_config(copy, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, rotary_emb_base=None)
    assert describe_checkpoint(copy).rotary_base == 10000.0
    _rewrite_config(copy, rotary_emb_base=20000.0)
    with pytest.raises(CheckpointError, match="two rotary bases"):
        describe_checkpoint(copy)
    _rewrite_config(copy, rope_parameters=None, rotary_emb_base=None)
    assert describe_checkpoint(copy).rotary_base == 20000.0  # JinaEmbeddingsV3Config.default_theta

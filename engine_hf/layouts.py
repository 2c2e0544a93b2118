"""Turn either published layout into one internal form: native base weights + stacked LoRA.

Internal LoRA convention (the original checkpoint's, per task ``t``, scaling ``s = alpha / rank``):

* Linear ``W [out, in]``:   ``W_t = W + s * B[t] @ A[t]``  with ``A [T, r, in]``, ``B [T, out, r]``
* Embedding ``E [V, d]``:   ``E_t = E + s * A[t] @ B[t]``  with ``A [T, V, r]``, ``B [T, r, d]``

The converted layout's PEFT files are mapped onto the same convention (PEFT stores
``lora_A.weight [r, in]`` / ``lora_B.weight [out, r]`` for Linear and ``lora_embedding_A [r, V]`` /
``lora_embedding_B [d, r]`` for Embedding), so both layouts load into identical tensors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from engine_hf.checkpoint import HF_ADAPTER_DIRS, CheckpointError, CheckpointInfo

__all__ = ["LinearLora", "EmbeddingLora", "LoadedWeights", "load_weights"]


@dataclass
class LinearLora:
    A: torch.Tensor  # [T, r, in]
    B: torch.Tensor  # [T, out, r]


@dataclass
class EmbeddingLora:
    A: torch.Tensor  # [T, V, r]
    B: torch.Tensor  # [T, r, d]


@dataclass
class LoadedWeights:
    base: dict[str, torch.Tensor]
    linear: dict[str, LinearLora] = field(default_factory=dict)
    embedding: dict[str, EmbeddingLora] = field(default_factory=dict)
    scaling: float = 0.25


def load_weights(info: CheckpointInfo) -> LoadedWeights:
    if info.layout == "original":
        return _load_original(info)
    return _load_hf(info)


def _read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder.name}: no *.safetensors weights (pytorch .bin files are not loaded)")
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        tensors.update(load_file(str(f)))
    return tensors


# --------------------------------------------------------------------------- original layout

_PARAM = ".parametrizations.weight."
_ORIGINAL_RENAMES = [
    (re.compile(r"^emb_ln\."), "embeddings.LayerNorm."),
    (re.compile(r"^encoder\.layers\.(\d+)\.mixer\.out_proj\."), r"layers.\1.self_attn.o_proj."),
    (re.compile(r"^encoder\.layers\.(\d+)\.mlp\.(fc[12])\."), r"layers.\1.mlp.\2."),
    (re.compile(r"^encoder\.layers\.(\d+)\.norm1\."), r"layers.\1.post_attention_layernorm."),
    (re.compile(r"^encoder\.layers\.(\d+)\.norm2\."), r"layers.\1.post_mlp_layernorm."),
    (re.compile(r"^(embeddings\.(?:word|token_type)_embeddings)\."), r"\1."),
    (re.compile(r"^pooler\.dense\."), "pooler.dense."),
]
_WQKV = re.compile(r"^encoder\.layers\.(\d+)\.mixer\.Wqkv\.$")


def _load_original(info: CheckpointInfo) -> LoadedWeights:
    raw = _read_safetensors(info.path)
    # Group tensors by module: "<module>." -> {"weight"|"bias"|"lora_A"|"lora_B": tensor}
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in raw.items():
        if key.startswith("roberta."):
            key = key[len("roberta.") :]
        if _PARAM in key:
            module, _, leaf = key.partition(_PARAM)
            name = {"original": "weight", "0.lora_A": "lora_A", "0.lora_B": "lora_B"}.get(leaf)
            if name is None:
                raise CheckpointError(f"unexpected parametrization tensor {key!r}")
        else:
            module, _, name = key.rpartition(".")
        modules.setdefault(module + ".", {})[name] = tensor

    out = LoadedWeights(base={}, scaling=info.lora_alpha / info.lora_rank)
    for module, parts in modules.items():
        qkv = _WQKV.match(module)
        targets = (
            [f"layers.{qkv.group(1)}.self_attn.{p}_proj." for p in "qkv"] if qkv else [_rename(module)]
        )
        if len(targets) == 1:
            (target,) = targets
            for name in ("weight", "bias"):
                if name in parts:
                    out.base[target + name] = parts[name]
            if "lora_A" in parts:
                _add_original_lora(out, target[:-1], parts["lora_A"], parts["lora_B"])
            continue
        # Fused Wqkv [3*d, d], rows ordered [Q; K; V]; the q/k/v adapters share A and take row chunks of B.
        weights = parts["weight"].chunk(3, dim=0)
        biases = parts["bias"].chunk(3, dim=0) if "bias" in parts else (None, None, None)
        b_chunks = parts["lora_B"].chunk(3, dim=1) if "lora_B" in parts else (None, None, None)
        for target, w, b, lb in zip(targets, weights, biases, b_chunks, strict=True):
            out.base[target + "weight"] = w.contiguous()
            if b is not None:
                out.base[target + "bias"] = b.contiguous()
            if lb is not None:
                out.linear[target[:-1]] = LinearLora(A=parts["lora_A"], B=lb.contiguous())
    return out


def _rename(module: str) -> str:
    for pattern, repl in _ORIGINAL_RENAMES:
        new, n = pattern.subn(repl, module)
        if n:
            return new
    raise CheckpointError(f"unexpected tensor group {module!r} in the original layout")


def _add_original_lora(out: LoadedWeights, module: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if module.startswith("embeddings."):
        out.embedding[module] = EmbeddingLora(A=a, B=b)  # A [T, V, r], B [T, r, d]
    else:
        out.linear[module] = LinearLora(A=a, B=b)  # A [T, r, in], B [T, out, r]


# --------------------------------------------------------------------------- converted (-hf) layout

_PEFT_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?:roberta\.|model\.)?(?P<module>.+?)\."
    r"(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?:\.(?:default\.)?weight|\.default)?$"
)


def _load_hf(info: CheckpointInfo) -> LoadedWeights:
    base = {}
    for key, tensor in _read_safetensors(info.path).items():
        base[key[len("roberta.") :] if key.startswith("roberta.") else key] = tensor
    out = LoadedWeights(base=base, scaling=info.lora_alpha / info.lora_rank)

    per_task: list[dict[str, dict[str, torch.Tensor]]] = []
    for task in info.tasks:
        folder = info.path / HF_ADAPTER_DIRS[task]
        cfg = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        if int(cfg["r"]) != info.lora_rank or float(cfg["lora_alpha"]) != info.lora_alpha:
            raise CheckpointError(f"adapter {folder.name}: rank/alpha differ between task adapters")
        modules: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in _read_safetensors(folder).items():
            m = _PEFT_KEY.match(key)
            if m is None:
                raise CheckpointError(f"adapter {folder.name}: unexpected tensor {key!r}")
            modules.setdefault(m["module"], {})[m["kind"]] = tensor
        per_task.append(modules)

    if not per_task:
        return out
    names = set(per_task[0])
    if any(set(m) != names for m in per_task):
        raise CheckpointError("task adapters target different modules")
    for module in sorted(names):
        parts = [m[module] for m in per_task]
        if "lora_embedding_A" in parts[0]:
            # PEFT: delta = (A^T @ B^T) * s  with A [r, V], B [d, r]
            out.embedding[module] = EmbeddingLora(
                A=torch.stack([p["lora_embedding_A"].T for p in parts]),
                B=torch.stack([p["lora_embedding_B"].T for p in parts]),
            )
        else:
            out.linear[module] = LinearLora(
                A=torch.stack([p["lora_A"] for p in parts]),
                B=torch.stack([p["lora_B"] for p in parts]),
            )
    return out

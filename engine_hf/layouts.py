"""Turn either published layout into one internal form: native base weights + stacked LoRA.

Internal LoRA convention (the original checkpoint's, per task ``t``, scaling ``s = alpha / rank``):

* Linear ``W [out, in]``:   ``W_t = W + s * B[t] @ A[t]``  with ``A [T, r, in]``, ``B [T, out, r]``
* Embedding ``E [V, d]``:   ``E_t = E + s * A[t] @ B[t]``  with ``A [T, V, r]``, ``B [T, r, d]``

Base weights of either layout, under either naming, get their native names from transformers' own
conversion mapping (:mod:`engine_hf.weight_names`). The LoRA tensors are ours to map: transformers'
mapping knows nothing of the original layout's parametrizations, and PEFT's files for the converted
layout store ``lora_A.weight [r, in]`` / ``lora_B.weight [out, r]`` for Linear and
``lora_embedding_A [r, V]`` / ``lora_embedding_B [d, r]`` for Embedding, one file per task.
Both load into identical tensors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from engine_hf.checkpoint import HF_ADAPTER_DIRS, CheckpointError, CheckpointInfo
from engine_hf.weight_names import NativeNames

__all__ = ["LinearLora", "EmbeddingLora", "LoadedWeights", "load_weights", "split_original"]


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
_PARAM_LEAVES = {"original": "weight", "0.lora_A": "lora_A", "0.lora_B": "lora_B"}


def split_original(
    tensors: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, LinearLora | EmbeddingLora]]:
    """Original-layout tensors -> (base weights under their original names with the parametrizations
    undone, LoRA factors per NATIVE module name).

    transformers' mapping names the modules; splitting the fused ``Wqkv``'s adapter is ours: its rows
    are ``[Q; K; V]``, so the q/k/v adapters share ``A`` and take row chunks of ``B``.
    """
    names = NativeNames()
    base: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[str, torch.Tensor]] = {}  # original module -> {"lora_A", "lora_B"}
    for key, tensor in tensors.items():
        if _PARAM not in key:
            base[key] = tensor
            continue
        module, _, leaf = key.partition(_PARAM)
        name = _PARAM_LEAVES.get(leaf)
        if name is None:
            raise CheckpointError(f"unexpected parametrization tensor {key!r}")
        if name == "weight":
            base[f"{module}.weight"] = tensor
        else:
            parts.setdefault(module, {})[name] = tensor

    lora: dict[str, LinearLora | EmbeddingLora] = {}
    for module, factors in parts.items():
        if set(factors) != {"lora_A", "lora_B"}:
            raise CheckpointError(f"{module}: LoRA needs both lora_A and lora_B")
        a, b = factors["lora_A"], factors["lora_B"]
        targets = [t.removesuffix(".weight") for t in names.keys(f"{module}.weight")]
        if len(targets) > 1:
            for target, rows in zip(targets, b.chunk(len(targets), dim=1), strict=True):
                lora[target] = LinearLora(A=a, B=rows.contiguous())
        elif targets[0].startswith("embeddings."):
            lora[targets[0]] = EmbeddingLora(A=a, B=b)  # A [T, V, r], B [T, r, d]
        else:
            lora[targets[0]] = LinearLora(A=a, B=b)  # A [T, r, in], B [T, out, r]
    return base, lora


def _load_original(info: CheckpointInfo) -> LoadedWeights:
    base, lora = split_original(_read_safetensors(info.path))
    out = LoadedWeights(base=NativeNames().tensors(base), scaling=info.lora_alpha / info.lora_rank)
    for module, factors in lora.items():
        if isinstance(factors, EmbeddingLora):
            out.embedding[module] = factors
        else:
            out.linear[module] = factors
    return out


# --------------------------------------------------------------------------- converted (-hf) layout

_PEFT_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?:roberta\.|model\.)?(?P<module>.+?)\."
    r"(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?:\.(?:default\.)?weight|\.default)?$"
)


def _load_hf(info: CheckpointInfo) -> LoadedWeights:
    base = NativeNames().tensors(_read_safetensors(info.path))
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

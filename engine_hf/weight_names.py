"""Native ``JinaEmbeddingsV3Model`` names for base weights stored under either naming.

Two namings of the same base weights exist in the wild: the native one (``layers.N.self_attn.q_proj``,
``embeddings.LayerNorm``, ...) and the original one (``emb_ln``, ``encoder.layers.N.mixer.Wqkv``,
``mixer.out_proj``, ``norm1``/``norm2``). The original layout uses the latter, and so does
``JinaEmbeddingsV3Model.save_pretrained`` (transformers writes the reverse of its conversion mapping),
so ``-hf`` checkpoints carry either. Rather than a second hand-written rename table, this module
applies transformers' own conversion mapping for ``jina_embeddings_v3`` (the one ``from_pretrained``
uses): its renamings, then at most one converter whose operations split the fused ``Wqkv``.
Native names pass through unchanged, so one function reads both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from transformers.conversion_mapping import get_checkpoint_conversion_mapping
from transformers.core_model_loading import WeightConverter, WeightRenaming

from engine_hf.checkpoint import HF_MODEL_TYPE, CheckpointError

__all__ = ["NativeNames"]

#: ``JinaEmbeddingsV3PreTrainedModel.base_model_prefix``: the original layout prefixes every key with it.
BASE_MODEL_PREFIX = "roberta."


@dataclass(frozen=True)
class _Match:
    #: the native key(s): several when a converter splits one tensor (``Wqkv`` -> q, k, v)
    names: tuple[str, ...]
    converter: WeightConverter | None


class NativeNames:
    """transformers' conversion mapping for ``jina_embeddings_v3``, applied to keys and tensors."""

    def __init__(self) -> None:
        mapping = get_checkpoint_conversion_mapping(HF_MODEL_TYPE)
        if not mapping:
            raise CheckpointError(
                f"this transformers has no checkpoint conversion mapping for {HF_MODEL_TYPE!r} (need >= 5.4)"
            )
        self._renamings = [m for m in mapping if isinstance(m, WeightRenaming)]
        self._converters = [m for m in mapping if isinstance(m, WeightConverter)]

    def keys(self, key: str) -> tuple[str, ...]:
        """The native key(s) that checkpoint ``key`` becomes (three for a fused ``Wqkv`` tensor)."""
        return self._match(key).names

    def tensors(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state`` under native names, fused tensors split by the converter's own operations."""
        out: dict[str, torch.Tensor] = {}
        for key, tensor in state.items():
            match = self._match(key)
            pieces = {match.names[0]: tensor}
            if match.converter is not None:
                pieces = self._convert(match, tensor)
            for name, piece in pieces.items():
                if name in out:
                    raise CheckpointError(f"two tensors map to {name!r} (the checkpoint mixes namings?)")
                out[name] = piece
        return out

    def _match(self, key: str) -> _Match:
        renamed = key.removeprefix(BASE_MODEL_PREFIX)
        for renaming in self._renamings:
            renamed, _ = renaming.rename_source_key(renamed)
        for converter in self._converters:
            converted, pattern = converter.rename_source_key(renamed)
            if pattern is None:
                continue
            # transformers names the first target; the others share its prefix and suffix.
            prefix, _, suffix = converted.partition(converter.target_patterns[0])
            return _Match(tuple(prefix + t + suffix for t in converter.target_patterns), converter)
        return _Match((renamed,), None)

    @staticmethod
    def _convert(match: _Match, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        converter = match.converter
        assert converter is not None
        pieces: dict[str, torch.Tensor] = {converter.source_patterns[0]: tensor}
        for op in converter.operations:
            pieces = op.convert(
                pieces, source_patterns=converter.source_patterns, target_patterns=converter.target_patterns
            )
        by_target = dict(zip(converter.target_patterns, match.names, strict=True))
        return {by_target[target]: piece for target, piece in pieces.items()}

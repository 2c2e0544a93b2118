"""The sentence-transformers pipeline in torch: transformers' own model -> Pooling -> Dense -> Normalize.

The Transformer is ``AutoModel.from_pretrained(..., trust_remote_code=False)`` (the same class
sentence-transformers builds for a feature-extraction checkpoint); pooling, Dense and Normalize
are the reference's formulas. In float32 the whole pipeline is the reference's arithmetic; with
``bfloat16``/``float16`` the transformer runs in that dtype and what follows it in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load_file

from engine_hf.checkpoint import CheckpointError
from engine_hf.st.layout import DenseSpec, NormalizeSpec, StLayout
from engine_hf.st.pooling import pool

__all__ = ["PipelineShape", "StPipeline", "load_pipeline", "plan_pipeline"]


class _Dense(torch.nn.Module):
    """sentence-transformers' Dense: ``activation(linear(x))`` (+ ``x`` or a projection of it)."""

    def __init__(self, spec: DenseSpec) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(spec.in_features, spec.out_features, bias=spec.bias)
        self.activation: torch.nn.Module = getattr(torch.nn, spec.activation)()
        self.use_residual = spec.use_residual
        if spec.use_residual and spec.in_features != spec.out_features:
            self.residual = torch.nn.Linear(spec.in_features, spec.out_features, bias=False)
        if spec.weights.suffix == ".safetensors":
            state = load_file(str(spec.weights))
        else:
            state = torch.load(str(spec.weights), map_location="cpu", weights_only=True)
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{spec.path.name}: Dense weights do not fit (missing {sorted(missing)}, unexpected {sorted(unexpected)})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.activation(self.linear(x))
        if self.use_residual:
            out = out + (x if not hasattr(self, "residual") else self.residual(x))
        return out


@dataclass
class StPipeline:
    model: torch.nn.Module
    modes: tuple[str, ...]
    include_prompt: bool
    #: after pooling: Dense modules (float32) and ``None`` for Normalize
    steps: list[torch.nn.Module | None]
    truncate_dim: int | None
    dimensions: int
    device: torch.device
    dtype: torch.dtype
    vocab_size: int
    max_position_embeddings: int | None

    @property
    def resident_bytes(self) -> int:
        params = [*self.model.parameters(), *(p for s in self.steps if s is not None for p in s.parameters())]
        return sum(p.numel() * p.element_size() for p in params)

    @torch.inference_mode()
    def embed(self, ids: list[list[int]], skip: list[int], pad_id: int) -> torch.Tensor:
        """One padded forward pass: ``[len(ids), dimensions]`` float32 on the CPU."""
        longest = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), longest), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
        skips = torch.tensor(skip if not self.include_prompt else [0] * len(ids), dtype=torch.long, device=self.device)
        x = pool(hidden, mask, skips, self.modes)
        for step in self.steps:
            x = torch.nn.functional.normalize(x, p=2, dim=-1) if step is None else step(x)
        if self.truncate_dim is not None:
            x = x[:, : self.truncate_dim]
        return x.cpu()


@dataclass(frozen=True, slots=True)
class PipelineShape:
    """What the checkpoint's config and modules say, before any weight is loaded: the sizes checked
    to chain from the model through pooling and Dense to the output."""

    config: Any
    dimensions: int
    vocab_size: int
    max_position_embeddings: int | None


def plan_pipeline(layout: StLayout) -> PipelineShape:
    """The transformer's config (no remote code) and the output's width; refuse anything whose
    sizes do not chain."""
    from transformers import AutoConfig

    folder = str(layout.transformer.path)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False, **layout.transformer.config_kwargs)
    except (ValueError, KeyError) as exc:  # an unknown model_type: transformers has no class for it
        raise CheckpointError(f"transformers cannot build this model's config: {exc}") from exc
    if getattr(config, "is_encoder_decoder", False):
        raise CheckpointError(f"encoder-decoder models ({config.model_type}) are not served by this kind")
    hidden = getattr(config, "hidden_size", None)
    spec = layout.pooling
    if spec.embedding_dimension is not None and hidden is not None and spec.embedding_dimension != hidden:
        raise CheckpointError(f"Pooling says {spec.embedding_dimension} dimensions, the model has {hidden}")
    width = len(spec.modes) * int(spec.embedding_dimension or hidden or 0)
    if width == 0:
        raise CheckpointError("cannot tell the model's hidden size (config.json hidden_size)")
    for step in layout.steps:
        if isinstance(step, NormalizeSpec):
            continue
        if step.in_features != width:
            raise CheckpointError(f"{step.path.name}: Dense takes {step.in_features} features, it gets {width}")
        width = step.out_features
    if layout.truncate_dim is not None:
        if not 0 < layout.truncate_dim <= width:
            raise CheckpointError(f"truncate_dim {layout.truncate_dim} is outside the output's {width} dimensions")
        width = layout.truncate_dim
    mpe = getattr(config, "max_position_embeddings", None)
    return PipelineShape(config, width, int(config.vocab_size), int(mpe) if mpe is not None else None)


def load_pipeline(layout: StLayout, shape: PipelineShape, *, device: torch.device, dtype: torch.dtype) -> StPipeline:
    """The model and the modules after it, on ``device`` (``shape``: :func:`plan_pipeline`'s)."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(
        str(layout.transformer.path), config=shape.config, trust_remote_code=False, dtype=dtype
    )
    model.eval().to(device)
    steps: list[torch.nn.Module | None] = [
        None if isinstance(step, NormalizeSpec) else _Dense(step).eval().to(device) for step in layout.steps
    ]
    return StPipeline(
        model=model,
        modes=layout.pooling.modes,
        include_prompt=layout.pooling.include_prompt,
        steps=steps,
        truncate_dim=layout.truncate_dim,
        dimensions=shape.dimensions,
        device=device,
        dtype=dtype,
        vocab_size=shape.vocab_size,
        max_position_embeddings=shape.max_position_embeddings,
    )

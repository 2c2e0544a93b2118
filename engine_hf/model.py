"""The encoder: native ``JinaEmbeddingsV3Model`` + per-row task adapters + fp32 mean pooling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from transformers import JinaEmbeddingsV3Config, JinaEmbeddingsV3Model
from transformers.models.jina_embeddings_v3.modeling_jina_embeddings_v3 import (
    JinaEmbeddingsV3RotaryEmbedding,
)

from engine_hf.attention import PACKED
from engine_hf.checkpoint import CheckpointError, CheckpointInfo
from engine_hf.cpu_kernels import KernelLinear, KernelName
from engine_hf.layouts import LoadedWeights, load_weights
from engine_hf.lora import AdapterSelection, MultiLoraLinear, install_adapters
from gateway.contract import Task

__all__ = ["JinaEncoder", "build_config"]

_CONFIG_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "layer_norm_eps",
    "type_vocab_size",
    "max_position_embeddings",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
)


def build_config(info: CheckpointInfo, attn_implementation: str = "sdpa") -> JinaEmbeddingsV3Config:
    """A native config for either layout; the rotary base always comes from the checkpoint."""
    raw = info.raw_config
    kwargs = {k: raw[k] for k in _CONFIG_FIELDS if raw.get(k) is not None}
    act = raw.get("hidden_act", "gelu")
    if act != "gelu":
        raise CheckpointError(f"hidden_act {act!r}: jina-embeddings-v3 uses exact (erf) gelu")
    config = JinaEmbeddingsV3Config(
        **kwargs,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        rope_parameters={"rope_type": "default", "rope_theta": info.rotary_base},
    )
    config._attn_implementation = attn_implementation
    return config


class JinaEncoder:
    """Owns the model on its device; ``pooled()`` is the whole forward path of ``encode()``.

    Not thread-safe: the engine's single worker thread is its only caller.
    """

    def __init__(
        self,
        info: CheckpointInfo,
        *,
        device: torch.device,
        dtype: torch.dtype,
        merged_adapters: bool = False,
        weights: LoadedWeights | None = None,
        compile_mode: str | None = None,
        kernels: KernelName = "torch",
    ) -> None:
        """``kernels``: what runs the linear layers' base ``W x + b`` on a CPU (see
        :mod:`engine_hf.cpu_kernels`; ``int8`` quantises them, the rest of the model stays in ``dtype``)."""
        if kernels != "torch" and device.type != "cpu":
            raise ValueError(f"the {kernels} kernels run on a CPU, not on {device}")
        if kernels != "torch" and compile_mode:
            raise ValueError(f"torch.compile runs the torch kernels, not {kernels}")
        if kernels == "int8" and dtype != torch.float32:
            raise ValueError("the int8 kernels run in a float32 model")
        self.info = info
        self.device = device
        self.dtype = dtype
        self.config = build_config(info)
        #: adapter index of each task; tasks the checkpoint lacks are absent
        self.task_index: dict[Task, int] = {t: i for i, t in enumerate(info.tasks)}
        weights = weights if weights is not None else load_weights(info)
        self.model = self._build(weights)
        self.selection = AdapterSelection(len(info.tasks), info.lora_rank)
        linear = {k: v for k, v in weights.linear.items() if not k.startswith("pooler.")}
        self.adapted_modules = install_adapters(
            self.model, linear, weights.embedding, weights.scaling, self.selection, merged_adapters
        )
        if info.tasks and self.adapted_modules == 0:
            raise CheckpointError("the checkpoint declares tasks but no adapter tensors were found")
        self.model.eval()
        self.kernels: KernelName = kernels
        if kernels != "torch":
            self._use_kernels(kernels)
        if compile_mode:
            # "reduce-overhead" = CUDA graphs; shapes vary with every batch, hence dynamic=True.
            self.model = torch.compile(self.model, mode=None if compile_mode == "default" else compile_mode, dynamic=True)

    def _build(self, weights: LoadedWeights) -> nn.Module:
        with torch.device("meta"):
            model = JinaEmbeddingsV3Model(self.config)
        model.pooler = None  # the pooler is never used for embeddings
        base = {k: v for k, v in weights.base.items() if not k.startswith("pooler.")}
        missing, unexpected = model.load_state_dict(base, strict=False, assign=True)
        if missing or unexpected:
            raise CheckpointError(
                f"weights do not match the architecture: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        # Non-persistent buffers were created on the meta device: make real ones.
        model.rotary_emb = JinaEmbeddingsV3RotaryEmbedding(self.config)
        emb = model.embeddings
        n = self.config.max_position_embeddings
        emb.position_ids = torch.arange(n).unsqueeze(0)
        emb.token_type_ids = torch.zeros(1, n, dtype=torch.long)
        for name, buf in model.named_buffers():
            if buf.is_meta:
                raise CheckpointError(f"buffer {name} was not materialised")
        return model.to(device=self.device, dtype=self.dtype)

    def _use_kernels(self, name: KernelName) -> None:
        for module_name, module in list(self.model.named_modules()):
            if isinstance(module, MultiLoraLinear):
                module.use_kernel(name)
            elif type(module) is nn.Linear:
                parent_name, _, attr = module_name.rpartition(".")
                setattr(self.model.get_submodule(parent_name), attr, KernelLinear(module, name))

    def adapter_rows(self, tasks: Sequence[Task | None]) -> torch.Tensor:
        return torch.tensor([-1 if t is None else self.task_index[t] for t in tasks], device=self.device)

    @torch.inference_mode()
    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, rows: torch.Tensor
    ) -> torch.Tensor:
        """Last hidden states ``[B, L, d]`` in the model dtype; ``rows``: adapter index per row."""
        self.selection.set(rows.unsqueeze(-1), self.dtype)
        try:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        finally:
            self.selection.clear()
        return out.last_hidden_state

    @torch.inference_mode()
    def token_states(
        self, seqs: Sequence[Sequence[int]], adapters: Sequence[int], *, packed: bool
    ) -> list[torch.Tensor]:
        """Last hidden states of each sequence (``[len_i, d]``, model dtype) from ONE forward pass.

        ``adapters``: adapter index per sequence (-1 = no task). ``packed`` concatenates the
        sequences into one row with per-sequence positions and attention (no padding); otherwise
        they are padded to the longest and masked.
        """
        lengths = [len(s) for s in seqs]
        dev = self.device
        if packed:
            ids = torch.tensor([t for s in seqs for t in s], device=dev).unsqueeze(0)
            positions = torch.cat([torch.arange(n) for n in lengths]).to(dev).unsqueeze(0)
            bounds, start = [], 0
            for n in lengths:
                bounds.append((start, start + n))
                start += n
            if len(set(adapters)) == 1:
                rows = torch.full((1, 1), adapters[0], device=dev)
            else:
                rows = torch.repeat_interleave(torch.tensor(adapters), torch.tensor(lengths)).to(dev).unsqueeze(0)
            self.selection.set(rows, self.dtype)
            previous = self.model.config._attn_implementation
            self.model.config._attn_implementation = PACKED
            try:
                h = self.model(input_ids=ids, position_ids=positions, packed_bounds=bounds).last_hidden_state[0]
            finally:
                self.model.config._attn_implementation = previous
                self.selection.clear()
            return [h[a:b] for a, b in bounds]
        longest = max(lengths)
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else 1
        ids = torch.full((len(seqs), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), longest), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        padded = min(lengths) < longest
        h = self.hidden_states(
            ids.to(dev), mask.to(dev) if padded else None, torch.tensor(adapters, device=dev)
        )
        return [h[i, :n] for i, n in enumerate(lengths)]

    @torch.inference_mode()
    def pooled_batch(
        self, seqs: Sequence[Sequence[int]], adapters: Sequence[int], *, packed: bool
    ) -> torch.Tensor:
        """fp32 mean of each sequence's token states: ``[B, d]``."""
        return torch.stack([h.float().mean(dim=0) for h in self.token_states(seqs, adapters, packed=packed)])

    @torch.inference_mode()
    def pooled_segments(
        self,
        seqs: Sequence[Sequence[int]],
        adapters: Sequence[int],
        segments: Sequence[Sequence[tuple[int, int]] | Literal["tokens"] | None],
        *,
        packed: bool,
    ) -> list[torch.Tensor]:
        """One forward pass; per sequence the fp32 mean ``[d]`` (``segments[i] is None``), the fp32
        **sums** ``[k, d]`` of its token states over each ``[start, end)`` of ``segments[i]`` (late
        chunking: the sums of several windows add up exactly, means would not), or every token's
        fp32 state ``[len_i, d]`` (``segments[i] == "tokens"``: TEI's ``/embed_all``)."""
        out: list[torch.Tensor] = []
        for h, spans in zip(self.token_states(seqs, adapters, packed=packed), segments, strict=True):
            h = h.float()
            if spans is None:
                out.append(h.mean(dim=0))
            elif spans == "tokens":
                out.append(h)
            else:
                out.append(torch.stack([h[a:b].sum(dim=0) for a, b in spans]))
        return out

    @torch.inference_mode()
    def pooled(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """fp32 mean pooling over the attention mask: ``sum(h*m) / clamp(sum(m), 1e-9)``."""
        padded = bool((attention_mask == 0).any())
        h = self.hidden_states(input_ids, attention_mask if padded else None, rows).float()
        m = attention_mask.unsqueeze(-1).to(torch.float32)
        return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)

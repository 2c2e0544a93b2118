"""Packed ("varlen") attention: many sequences in one row, no padding.

A transformers model runs on ``[batch, length]`` and pads every sequence to the longest; with
mixed lengths the padding costs compute in every layer, and attention cost grows with the padded
length squared. In packed mode an engine concatenates a pass's sequences into one row
(``[1, total]``), restarts ``position_ids`` for each sequence by the model's own rule (so the
positions are those each sequence gets alone: RoPE's from 0 for jina-embeddings-v3, XLM-R's after
the pad id for BGE-M3), and this attention function attends within each sequence only. The linear layers (most of
the FLOPs) then run on exactly the real tokens.

On CUDA in fp16/bf16, when torch has it (``torch.nn.attention.varlen``, 2.9+), the whole packed
row goes to one FlashAttention varlen kernel with the cumulative sequence bounds; elsewhere (CPU,
fp32) each sequence gets its own SDPA call on its slice.

Registered with transformers' ``AttentionInterface`` under :data:`PACKED`; the model forwards our
``packed_bounds`` keyword to it. A name transformers does not know also tells its mask builder to make
no mask.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

varlen_attn: Any
try:
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # torch < 2.9
    varlen_attn = None

__all__ = ["PACKED", "cumulative_bounds", "packed_attention", "uses_varlen_kernel"]

PACKED = "embed_gateway_packed"


def cumulative_bounds(bounds: list[tuple[int, int]], device: torch.device) -> tuple[torch.Tensor, int]:
    """``[0, end_1, end_2, ...]`` (int32, the varlen kernels' ``cu_seqlens``) and the longest length."""
    if any(start != (bounds[i - 1][1] if i else 0) for i, (start, _) in enumerate(bounds)):
        raise ValueError("packed sequences must be contiguous and start at 0")
    ends = [0, *(end for _, end in bounds)]
    return torch.tensor(ends, dtype=torch.int32, device=device), max(e - s for s, e in bounds)


def uses_varlen_kernel(query: torch.Tensor) -> bool:
    """Whether a packed batch of ``query`` goes to the fused varlen kernel (CUDA, half precision)."""
    return varlen_attn is not None and query.is_cuda and query.dtype in (torch.float16, torch.bfloat16)


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """``query/key/value [1, heads, total, head_dim]`` -> ``[1, total, heads, head_dim]``."""
    bounds: list[tuple[int, int]] = kwargs["packed_bounds"]
    if uses_varlen_kernel(query):
        cu, longest = cumulative_bounds(bounds, query.device)
        # [1, heads, total, d] -> [total, heads, d], the kernel's layout
        q, k, v = (t[0].transpose(0, 1).contiguous() for t in (query, key, value))
        fused: torch.Tensor = varlen_attn(q, k, v, cu, cu, longest, longest, scale=scaling)
        return fused.unsqueeze(0), None
    if len(bounds) == 1:
        out = F.scaled_dot_product_attention(query, key, value, scale=scaling)
    else:
        out = torch.empty_like(query)
        for start, end in bounds:
            out[:, :, start:end] = F.scaled_dot_product_attention(
                query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], scale=scaling
            )
    return out.transpose(1, 2), None


AttentionInterface.register(PACKED, packed_attention)

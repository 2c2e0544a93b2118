"""Packed ("varlen") attention: many sequences in one row, no padding.

The native model runs on ``[batch, length]`` and pads every sequence to the longest; with mixed
lengths the padding costs compute in every layer, and attention cost grows with the padded length
squared. In packed mode the engine concatenates a batch's sequences into one row
(``[1, total]``), restarts ``position_ids`` at 0 for each sequence (so RoPE sees the same positions
as alone), and this attention function attends within each sequence only. The linear layers (most of
the FLOPs) then run on exactly the real tokens.

Registered with transformers' ``AttentionInterface`` under :data:`PACKED`; the model forwards our
``jina_bounds`` keyword to it. A name transformers does not know also tells its mask builder to make
no mask.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

__all__ = ["PACKED", "packed_attention"]

PACKED = "jina_packed"


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
    bounds: list[tuple[int, int]] = kwargs["jina_bounds"]
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

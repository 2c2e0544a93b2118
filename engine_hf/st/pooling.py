"""sentence-transformers' Pooling over a right-padded batch, mode by mode as its ``_forward_padded``.

Each row may carry a different prompt (a batch mixes tasks), so the prompt exclusion of
``include_prompt: false`` is per row: its first ``skip`` positions are masked out before pooling,
as sentence-transformers masks the first ``prompt_length`` positions of its one-prompt batch.
The edge cases follow the reference too: ``cls`` with the prompt excluded takes the first token
after it; ``weightedmean`` keeps each token's original position weight; a row with nothing left
pools to zeros (``-inf`` for ``max``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["pool"]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, skip: torch.Tensor, modes: Sequence[str]) -> torch.Tensor:
    """``[B, T, D]`` token states (float32), ``[B, T]`` mask of real tokens, ``[B]`` leading
    positions to exclude -> ``[B, len(modes) * D]``, the modes' outputs concatenated in order."""
    positions = torch.arange(hidden.shape[1], device=hidden.device)
    mask = attention_mask * (positions.unsqueeze(0) >= skip.unsqueeze(1)).to(attention_mask.dtype)
    outputs: list[torch.Tensor] = []
    for mode in modes:
        if mode == "cls":
            first = mask.to(torch.int).argmax(dim=1)
            outputs.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), first])
        elif mode == "max":
            m = mask.unsqueeze(-1).expand_as(hidden).to(hidden.dtype)
            outputs.append(hidden.masked_fill(m == 0, float("-inf")).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            m = mask.unsqueeze(-1).to(hidden.dtype)
            total = (hidden * m).sum(dim=1)
            count = torch.clamp(m.sum(dim=1), min=1e-9)
            outputs.append(total / (count if mode == "mean" else torch.sqrt(count)))
        elif mode == "weightedmean":
            # right padding: the first real token is position 0, weight 1 (the reference subtracts
            # the left padding, none here)
            weights = (positions + 1).to(hidden.dtype).view(1, -1, 1)
            weighted = mask.unsqueeze(-1).to(hidden.dtype) * weights
            outputs.append((hidden * weighted).sum(dim=1) / torch.clamp(weighted.sum(dim=1), min=1e-9))
        elif mode == "lasttoken":
            seq_len = hidden.shape[1]
            values, indices = mask.flip(1).max(1)
            indices = torch.where(values == 0, seq_len - 1, indices)
            last = seq_len - indices - 1
            masked = hidden * mask.unsqueeze(-1).to(hidden.dtype)
            outputs.append(masked[torch.arange(hidden.shape[0], device=hidden.device), last])
        else:  # read_layout admits only the modes above
            raise ValueError(f"unknown pooling mode {mode!r}")
    return torch.cat(outputs, dim=-1)

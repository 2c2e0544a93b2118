"""Task adapters applied per row, so one forward pass can mix tasks.

Every adapted ``nn.Linear`` / ``nn.Embedding`` of the native model is replaced by a module that
reads the current :class:`AdapterSelection` (set once per forward pass by the encoder):

* all rows without a task -> the base module alone;
* all rows on one task    -> base + that task's rank-r update (or, in ``merged`` mode, the
  pre-merged weight ``W + s*B@A`` of that task: no extra work at all);
* rows on different tasks -> base + ``((x @ A_cat^T) * mask) @ B_cat^T`` where ``A_cat``/``B_cat``
  concatenate all tasks (rank T*r) and ``mask`` keeps each row's own task columns.

All three are the same arithmetic as ``W_t = W + s * B[t] @ A[t]`` up to float rounding.

The base ``W x + b`` (and each merged weight) runs on a CPU kernel of :mod:`engine_hf.cpu_kernels`
once :meth:`MultiLoraLinear.use_kernel` has been called (``F.linear`` until then); the rank-r
updates always stay in torch (a few percent of the FLOPs), so per-row adapters work on every
kernel, the int8 one included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine_hf.checkpoint import CheckpointError
from engine_hf.cpu_kernels import KernelName, LinearKernel, make_kernel
from engine_hf.layouts import EmbeddingLora, LinearLora

__all__ = ["AdapterSelection", "MultiLoraEmbedding", "MultiLoraLinear", "install_adapters"]


class AdapterSelection:
    """Which adapter each row of the current forward pass uses (``-1`` = no task)."""

    def __init__(self, n_tasks: int, rank: int) -> None:
        self.n_tasks = n_tasks
        self.rank = rank
        self.single: int | None = None  # every row on this adapter (-1: no adapter at all)
        self.rows: torch.Tensor | None = None  # mixed: adapter index per row, broadcastable
        self.mask: torch.Tensor | None = None  # mixed: [..., T*r] 0/1 column mask per row
        self._col_task: torch.Tensor | None = None

    def set(self, rows: torch.Tensor, dtype: torch.dtype) -> None:
        """``rows``: adapter index per row (shape broadcastable against activations' leading dims)."""
        first = int(rows.reshape(-1)[0])
        if bool((rows == first).all()):
            self.single, self.rows, self.mask = first, None, None
            return
        if self._col_task is None or self._col_task.device != rows.device:
            self._col_task = torch.arange(self.n_tasks, device=rows.device).repeat_interleave(self.rank)
        self.single = None
        self.rows = rows
        self.mask = (rows.unsqueeze(-1) == self._col_task).to(dtype)

    def clear(self) -> None:
        self.single, self.rows, self.mask = -1, None, None


class MultiLoraLinear(nn.Module):
    def __init__(
        self,
        base: nn.Linear,
        lora: LinearLora,
        scaling: float,
        selection: AdapterSelection,
        merged: bool,
    ) -> None:
        super().__init__()
        self.selection = selection
        self.weight = base.weight
        self.bias = base.bias
        a = lora.A.to(torch.float32)  # [T, r, in]
        b = lora.B.to(torch.float32) * scaling  # [T, out, r], scaling folded in
        dtype, device = base.weight.dtype, base.weight.device
        n_tasks, rank, fan_in = a.shape
        self.register_buffer("A", a.to(dtype=dtype, device=device), persistent=False)
        self.register_buffer("B", b.to(dtype=dtype, device=device), persistent=False)
        self.register_buffer("A_cat", self.A.reshape(n_tasks * rank, fan_in), persistent=False)
        self.register_buffer(
            "B_cat", self.B.permute(1, 0, 2).reshape(b.shape[1], n_tasks * rank).contiguous(), persistent=False
        )
        self.merged: list[torch.Tensor] | None = None
        if merged:
            w = base.weight.detach().to(torch.float32)
            self.merged = [(w + b[t].to(w.device) @ a[t].to(w.device)).to(dtype) for t in range(n_tasks)]
        self._base: LinearKernel | None = None
        self._merged_kernels: list[LinearKernel] | None = None

    def use_kernel(self, name: KernelName) -> None:
        """Run the base linear (and the merged weights) on CPU kernel ``name``. A kernel that
        repacks the weights frees the plain copies (the module then holds only the packed ones)."""
        if name == "torch":
            return
        self._base = make_kernel(name, self.weight, self.bias)
        if self.merged is not None:
            self._merged_kernels = [make_kernel(name, w, self.bias) for w in self.merged]
            self.merged = None
        # the packed copy replaces the plain weight; keep an empty placeholder of its dtype
        self.weight = nn.Parameter(self.weight.detach().new_empty(0), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sel = self.selection
        t = sel.single
        if t is not None and t >= 0:
            if self._merged_kernels is not None:
                return self._merged_kernels[t](x)
            if self.merged is not None:
                return F.linear(x, self.merged[t], self.bias)
        y = F.linear(x, self.weight, self.bias) if self._base is None else self._base(x)
        if t is not None and t < 0:
            return y
        # y += (x @ A^T [* mask]) @ B^T, the add fused into the second GEMM (y is fresh: in place is safe)
        flat_x = x.reshape(-1, x.shape[-1])
        if t is None:
            assert sel.mask is not None
            h = (F.linear(x, self.A_cat) * sel.mask).reshape(-1, self.A_cat.shape[0])
            b = self.B_cat
        else:
            h, b = F.linear(flat_x, self.A[t]), self.B[t]
        y.view(-1, y.shape[-1]).addmm_(h, b.T)
        return y


class MultiLoraEmbedding(nn.Module):
    def __init__(
        self, base: nn.Embedding, lora: EmbeddingLora, scaling: float, selection: AdapterSelection
    ) -> None:
        super().__init__()
        self.selection = selection
        self.weight = base.weight
        dtype, device = base.weight.dtype, base.weight.device
        self.register_buffer("A", lora.A.to(dtype=dtype, device=device), persistent=False)  # [T, V, r]
        self.register_buffer(
            "B", (lora.B.to(torch.float32) * scaling).to(dtype=dtype, device=device), persistent=False
        )  # [T, r, d]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        e = F.embedding(ids, self.weight)
        sel = self.selection
        if sel.single is not None:
            if sel.single < 0:
                return e
            return e + F.embedding(ids, self.A[sel.single]) @ self.B[sel.single]
        assert sel.rows is not None
        rows = sel.rows.expand_as(ids)
        for t in torch.unique(sel.rows).tolist():
            if t < 0:
                continue
            keep = (rows == t).unsqueeze(-1).to(e.dtype)
            e = e + (F.embedding(ids, self.A[t]) * keep) @ self.B[t]
        return e


def install_adapters(
    model: nn.Module,
    linear: dict[str, LinearLora],
    embedding: dict[str, EmbeddingLora],
    scaling: float,
    selection: AdapterSelection,
    merged: bool,
) -> int:
    """Replace every adapted submodule of ``model`` in place; returns how many were replaced."""
    replaced = 0
    for path, lora in linear.items():
        parent, name = _parent(model, path)
        setattr(parent, name, MultiLoraLinear(getattr(parent, name), lora, scaling, selection, merged))
        replaced += 1
    for path, elora in embedding.items():
        parent, name = _parent(model, path)
        setattr(parent, name, MultiLoraEmbedding(getattr(parent, name), elora, scaling, selection))
        replaced += 1
    return replaced


def _parent(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    *head, name = path.split(".")
    module = model
    for part in head:
        module = getattr(module, part, None)
        if module is None:
            break
    if module is None or not isinstance(getattr(module, name, None), (nn.Linear, nn.Embedding)):
        raise CheckpointError(f"an adapter targets {path!r}, which the model does not have")
    return module, name

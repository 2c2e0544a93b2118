"""BGE-M3 on its device: the XLM-RoBERTa encoder and its two heads, one padded forward pass per batch.

What each output is, as FlagEmbedding's ``EncoderOnlyEmbedderM3ModelForInference`` computes it
from the last hidden state ``h`` of one input of ``n`` tokens (``<s> ... </s>``):

* dense: ``h[0]`` (the CLS row), returned un-normalised (the gateway normalises);
* sparse: ``relu(sparse_linear(h))`` per token, folded into lexical weights by
  :func:`engine_hf.bge_m3.outputs.lexical_weights`;
* multi-vector: ``colbert_linear(h[1:n])`` (CLS excluded, ``</s>`` kept), each row normalised.

Only the outputs a sequence asks for are computed; the heads run on the rows that want them.
Not thread-safe: the engine's single worker thread is its only caller.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from engine_hf.attention import PACKED
from engine_hf.bge_m3.checkpoint import COLBERT_FILE, SPARSE_FILE
from engine_hf.bge_m3.outputs import lexical_weights
from engine_hf.checkpoint import CheckpointError
from engine_hf.cpu_kernels import KernelLinear, KernelName
from gateway.contract import MULTIVECTOR, SPARSE, Output, SparseVector

__all__ = ["BGEM3Model", "M3Output", "M3Shape"]


@dataclass(frozen=True, slots=True)
class M3Output:
    """One input's outputs (fp32); ``None`` where the input did not ask for that output."""

    dense: npt.NDArray[np.float32]
    sparse: SparseVector | None = None
    multivector: npt.NDArray[np.float32] | None = None


@dataclass(frozen=True, slots=True)
class M3Shape:
    """What the encoder's config says, known before its weights are loaded."""

    hidden_size: int
    vocab_size: int
    pad_id: int
    #: the longest input the position table allows (XLM-R positions start at ``pad_id + 1``)
    max_tokens: int

    @classmethod
    def of(cls, config: Any) -> M3Shape:
        pad = int(config.pad_token_id if config.pad_token_id is not None else 1)
        return cls(int(config.hidden_size), int(config.vocab_size), pad, int(config.max_position_embeddings) - pad - 1)


class BGEM3Model:
    """Loads the published layout (no checkpoint code runs) and computes the three outputs."""

    def __init__(
        self,
        path: Path,
        *,
        device: torch.device,
        dtype: torch.dtype,
        kernels: KernelName = "torch",
        dropped_ids: Collection[int],
        packed: bool = False,
    ) -> None:
        """``dropped_ids``: token ids that never get a lexical weight (the tokenizer's cls, eos,
        pad and unk ids, as the reference takes them). ``kernels``: what runs the encoder's linear
        layers on a CPU (:mod:`engine_hf.cpu_kernels`); the small heads always run torch's.
        ``packed``: a pass's sequences go in one row with attention within each
        (:mod:`engine_hf.attention`), else padded to the longest."""
        if kernels != "torch" and device.type != "cpu":
            raise ValueError(f"the {kernels} kernels run on a CPU, not on {device}")
        if kernels == "int8" and dtype != torch.float32:
            raise ValueError("the int8 kernels run in a float32 model")
        from transformers import XLMRobertaModel

        self.device, self.dtype, self.kernels, self.packed = device, dtype, kernels, packed
        self.dropped_ids = frozenset(dropped_ids)
        encoder, info = XLMRobertaModel.from_pretrained(
            str(path), dtype=dtype, trust_remote_code=False, output_loading_info=True
        )
        missing = [k for k in info.get("missing_keys", ()) if not k.startswith("pooler.")]
        if missing:
            raise CheckpointError(
                f"{path.name}: the weights do not fit an XLM-RoBERTa encoder (missing {sorted(missing)[:5]})"
            )
        encoder.pooler = None  # never used: the dense output is the CLS row itself
        if packed:  # transformers' own layers, our attention function (registered by the import)
            encoder.config._attn_implementation = PACKED
        self.config = encoder.config
        hidden = int(self.config.hidden_size)
        self.encoder = encoder.to(device).eval()
        self.sparse_linear = _head(path / SPARSE_FILE, hidden, device, dtype)
        self.colbert_linear = _head(path / COLBERT_FILE, hidden, device, dtype)
        if self.sparse_linear.out_features != 1:
            raise CheckpointError(f"{path.name}: {SPARSE_FILE} maps to {self.sparse_linear.out_features} values, not 1")
        self.pad_id = self.shape.pad_id
        #: bytes of the loaded weights (parameters and buffers), as they sit on the device
        self.resident_bytes = sum(
            _nbytes(m) for m in (self.encoder, self.sparse_linear, self.colbert_linear)
        )
        if kernels != "torch":
            self.resident_bytes -= self._use_kernels(kernels)

    @property
    def shape(self) -> M3Shape:
        return M3Shape.of(self.config)

    def _use_kernels(self, name: KernelName) -> int:
        """Put the encoder's linear layers on CPU kernel ``name``; returns the bytes that saves
        (int8 weights take a quarter of fp32's)."""
        saved = 0
        for module_name, module in list(self.encoder.named_modules()):
            if type(module) is nn.Linear:
                if name == "int8":
                    saved += module.weight.numel() * (module.weight.element_size() - 1)
                parent, _, attr = module_name.rpartition(".")
                setattr(self.encoder.get_submodule(parent), attr, KernelLinear(module, name))
        return saved

    @torch.inference_mode()
    def forward(self, seqs: Sequence[Sequence[int]], wants: Sequence[Collection[Output]]) -> list[M3Output]:
        """One forward pass over ``seqs`` (token ids with ``<s>``/``</s>``), packed or padded;
        ``wants[i]``: the outputs besides dense that sequence ``i`` asks for."""
        states = self._packed(seqs) if self.packed else self._padded(seqs)  # each sequence's rows [n_i, d]
        dense = torch.stack([h[0] for h in states]).float().cpu().numpy()

        sparse: dict[int, SparseVector] = {}
        rows = [i for i, w in enumerate(wants) if SPARSE in w]
        if rows:
            weights = torch.relu(self.sparse_linear(torch.cat([states[i] for i in rows]))).squeeze(-1)
            host = weights.float().cpu().numpy()
            start = 0
            for i in rows:
                n = len(seqs[i])
                sparse[i] = lexical_weights(np.asarray(seqs[i]), host[start : start + n], self.dropped_ids)
                start += n

        multi: dict[int, npt.NDArray[np.float32]] = {}
        rows = [i for i, w in enumerate(wants) if MULTIVECTOR in w]
        if rows:
            tokens = torch.cat([states[i][1:] for i in rows])  # CLS excluded, </s> kept, no padding
            vecs = F.normalize(self.colbert_linear(tokens).float(), dim=-1).cpu().numpy()
            start = 0
            for i in rows:
                n = len(seqs[i]) - 1
                multi[i] = vecs[start : start + n]
                start += n
        return [M3Output(dense[i], sparse.get(i), multi.get(i)) for i in range(len(seqs))]

    def _padded(self, seqs: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """``[batch, longest]`` with a mask (none when every sequence has the same length)."""
        lengths = [len(s) for s in seqs]
        longest = max(lengths)
        ids = torch.full((len(seqs), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), longest), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        padded = min(lengths) < longest
        h = self.encoder(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device) if padded else None
        ).last_hidden_state
        return [h[i, :n] for i, n in enumerate(lengths)]

    def _packed(self, seqs: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """``[1, total]``: positions restart for each sequence, by XLM-R's own rule (counting from
        the pad id + 1, a literal pad token takes the pad id's position), attention stays within
        each sequence."""
        bounds: list[tuple[int, int]] = []
        start = 0
        for s in seqs:
            bounds.append((start, start + len(s)))
            start += len(s)
        ids = torch.tensor([t for s in seqs for t in s], dtype=torch.long)[None]
        positions = torch.cat([_positions(torch.tensor(s, dtype=torch.long), self.pad_id) for s in seqs])[None]
        h = self.encoder(
            input_ids=ids.to(self.device), position_ids=positions.to(self.device), packed_bounds=bounds
        ).last_hidden_state[0]
        return [h[a:b] for a, b in bounds]


def _positions(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """One sequence's XLM-R position ids, as the model derives them from ``input_ids`` alone."""
    real = ids.ne(pad_id).long()
    return torch.cumsum(real, dim=0) * real + pad_id


def _head(path: Path, hidden: int, device: torch.device, dtype: torch.dtype) -> nn.Linear:
    """One head as FlagEmbedding loads it: a ``Linear`` whose ``state_dict`` was ``torch.save``d
    (read with ``weights_only=True``: tensors only, no pickled code)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        weight = state["weight"]
        layer = nn.Linear(hidden, int(weight.shape[0]), bias="bias" in state)
        layer.load_state_dict(state)
    except Exception as exc:  # torch.load's unpickling errors have no common base; all mean "not a head"
        raise CheckpointError(
            f"{path.parent.name}/{path.name} is not a Linear({hidden} -> n) state_dict: {exc}"
        ) from exc
    return layer.to(device=device, dtype=dtype).eval()


def _nbytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])

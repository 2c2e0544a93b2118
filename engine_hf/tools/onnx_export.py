"""Export OUR exact fp32 encoder to ONNX with the published export's interface.

The published ONNX export of jina-embeddings-v3 (what FastEmbed runs) takes ``input_ids``,
``attention_mask`` ``[batch, seq]`` and a scalar ``task_id`` (the LoRA adapter to apply, in the
checkpoint's ``lora_adaptations`` order: 0 = retrieval.query … 4 = text-matching), and returns the
last hidden state ``text_embeds`` ``[batch, seq, 1024]``, mean-pooled by the caller. The bench
races ONNX Runtime on such a file; exporting it from the weights the engine serves (not
downloading one) keeps the race on one model, and :func:`verify` checks it computes what our fp32
engine does.

Run as ``python -m engine_hf.tools.onnx_export --model DIR --out OUT`` (writes ``OUT/model.onnx``
plus ``OUT/model.onnx.data`` with the weights, and ``OUT/export.json`` saying what it is).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine_hf.checkpoint import describe_checkpoint, resolve_model_dir
from engine_hf.lora import MultiLoraEmbedding, MultiLoraLinear
from engine_hf.model import JinaEncoder

__all__ = ["INT8_FILE", "ONNX_FILE", "export", "ort_session", "pooled", "quantize_int8", "verify"]

ONNX_FILE = "model.onnx"
#: the export quantised by :func:`quantize_int8`, next to it
INT8_FILE = "model.int8.onnx"
#: the published export's names
INPUTS = ("input_ids", "attention_mask", "task_id")
OUTPUT = "text_embeds"


class _TaskHolder:
    """The ``task_id`` tensor of the current forward pass, read by every adapted module (a traced
    value, so the exported graph gathers the adapter from its input)."""

    task: torch.Tensor | None = None


class _TaskLinear(nn.Module):
    """``W x + b + (x A[t]^T) B[t]^T`` with ``t`` the graph's ``task_id``: the rowwise adapter of
    :class:`MultiLoraLinear` with one task for the whole batch (as the published export)."""

    def __init__(self, src: MultiLoraLinear, holder: _TaskHolder) -> None:
        super().__init__()
        self.weight, self.bias, self.A, self.B, self.holder = src.weight, src.bias, src.A, src.B, holder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.holder.task
        assert t is not None
        return F.linear(x, self.weight, self.bias) + F.linear(F.linear(x, self.A[t]), self.B[t])


class _TaskEmbedding(nn.Module):
    def __init__(self, src: MultiLoraEmbedding, holder: _TaskHolder) -> None:
        super().__init__()
        self.weight, self.A, self.B, self.holder = src.weight, src.A, src.B, holder

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = self.holder.task
        assert t is not None
        return F.embedding(ids, self.weight) + F.embedding(ids, self.A[t]) @ self.B[t]


class _Exportable(nn.Module):
    """``(input_ids, attention_mask, task_id) -> text_embeds``, the published signature."""

    def __init__(self, enc: JinaEncoder) -> None:
        super().__init__()
        self.holder = _TaskHolder()
        self.model = enc.model
        for name, module in list(self.model.named_modules()):
            if isinstance(module, MultiLoraLinear | MultiLoraEmbedding):
                *head, leaf = name.split(".")
                parent = self.model.get_submodule(".".join(head))
                swapped = (_TaskLinear(module, self.holder) if isinstance(module, MultiLoraLinear)
                           else _TaskEmbedding(module, self.holder))
                setattr(parent, leaf, swapped)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        self.holder.task = task_id
        try:
            out: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        finally:
            self.holder.task = None
        return out


def export(model: str, out: Path, *, opset: int = 18) -> Path:
    """Write ``out/model.onnx`` (weights in ``model.onnx.data``) of the fp32 encoder of ``model``,
    dynamic in batch and sequence length; returns the file."""
    path = resolve_model_dir(model)
    info = describe_checkpoint(path)
    if not info.tasks:
        raise SystemExit("the checkpoint has no task adapters: the published interface needs task_id")
    enc = JinaEncoder(info, device=torch.device("cpu"), dtype=torch.float32)
    module = _Exportable(enc).eval()
    out.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1]])
    mask = (ids != 1).long()
    task = torch.tensor(len(info.tasks) - 1)
    t0 = time.perf_counter()
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            module, (ids, mask, task), input_names=list(INPUTS), output_names=[OUTPUT], opset_version=opset,
            dynamo=True, external_data=True, optimize=True,
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}, "task_id": None},
        )
    assert program is not None
    file = out / ONNX_FILE
    program.save(str(file), external_data=True)
    (out / "export.json").write_text(json.dumps({
        "model": str(path), "dtype": "float32", "tasks": list(info.tasks), "inputs": list(INPUTS), "output": OUTPUT,
        "opset": opset, "torch": torch.__version__, "seconds": round(time.perf_counter() - t0, 1),
    }, indent=2))
    return file


def quantize_int8(onnx_dir: Path) -> Path:
    """The export with ONNX Runtime's dynamic int8 quantisation, per output channel (the int8
    peer the CPU targets were set against): int8 weights of every constant MatMul, activations quantised per call. Written
    once next to the export (``model.int8.onnx``) and reused."""
    out = onnx_dir / INT8_FILE
    if not out.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # minutes at full size: written aside, then moved in (weights first), so an interrupted run
        # leaves no half-written model to be reused; the model names its weights file relatively
        with tempfile.TemporaryDirectory(dir=onnx_dir) as tmp:
            quantize_dynamic(onnx_dir / ONNX_FILE, Path(tmp) / INT8_FILE, per_channel=True,
                             weight_type=QuantType.QInt8, use_external_data_format=True)
            written = [f for f in Path(tmp).iterdir() if f.name.startswith(INT8_FILE)]  # model, weights
            for f in sorted(written, key=lambda f: f.name == INT8_FILE):
                f.replace(onnx_dir / f.name)
    return out


def ort_session(onnx_dir: Path, threads: int | None = None, file: str = ONNX_FILE) -> Any:
    """One ONNX Runtime CPU session over the export (or ``file`` next to it), as FastEmbed opens
    one: all graph optimisations, ``threads`` intra- and inter-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = threads
    return ort.InferenceSession(str(onnx_dir / file), sess_options=so, providers=["CPUExecutionProvider"])


def pad(seqs: Sequence[Sequence[int]], pad_id: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids``/``attention_mask`` of ``seqs`` padded to the longest (int64)."""
    longest = max(len(s) for s in seqs)
    ids = np.full((len(seqs), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), longest), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


def pooled(session: Any, seqs: Sequence[Sequence[int]], task_id: int) -> np.ndarray:
    """Mean over each sequence's tokens of ``text_embeds``, fp32 ``[B, d]`` (what FastEmbed's
    pooled embedding does before normalising)."""
    ids, mask = pad(seqs)
    (states,) = session.run([OUTPUT], {"input_ids": ids, "attention_mask": mask,
                                       "task_id": np.array(task_id, dtype=np.int64)})
    m = mask[..., None].astype(np.float32)
    return np.asarray((states * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None), dtype=np.float32)


def verify(model: str, onnx_dir: Path, seqs: Sequence[Sequence[int]]) -> dict[str, float]:
    """Lowest cosine per task between ORT on the export and our fp32 engine (padded batch)."""
    from engine_hf.tools.baselines import load_encoder

    enc, _ = load_encoder(model, "cpu", "float32")
    session = ort_session(onnx_dir)
    out = {}
    for task, index in enc.task_index.items():
        ours = enc.pooled_batch(seqs, [index] * len(seqs), packed=False).numpy()
        theirs = pooled(session, seqs, index)
        cos = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
        out[task] = float(cos.min())
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m engine_hf.tools.onnx_export", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="checkpoint directory (either layout)")
    p.add_argument("--out", required=True, type=Path, help="folder for model.onnx (+ .data) and export.json")
    p.add_argument("--verify", action="store_true", help="then compare ORT with the fp32 engine on a few sequences")
    args = p.parse_args()
    file = export(args.model, args.out)
    print(json.dumps({"onnx": str(file)}))
    if args.verify:
        seqs = [[0, *range(5, 5 + n), 2] for n in (3, 17, 40)]
        print(json.dumps({"min_cosine": verify(args.model, args.out, seqs)}))


if __name__ == "__main__":
    main()

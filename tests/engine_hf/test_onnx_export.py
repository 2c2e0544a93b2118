"""The ONNX export the bench races is our fp32 model: same vectors in ONNX Runtime, every task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from engine_hf.tools import onnx_export

#: lengths that make a padded batch (the mask matters) and a single sequence (batch axis 1)
SEQS = [[0, *range(7, 7 + n), 2] for n in (3, 30, 11, 64)]


def test_the_export_has_the_published_interface(onnx_dir: Path) -> None:
    graph = onnx.load(str(onnx_dir / onnx_export.ONNX_FILE), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "task_id"]
    assert [o.name for o in graph.output] == ["text_embeds"]
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input]
    assert all(isinstance(d, str) for d in dims[0]) and dims[2] == []  # dynamic batch x sequence; scalar task


@pytest.mark.parametrize("seqs", [SEQS, SEQS[1:2]], ids=["padded-batch", "one-sequence"])
def test_ort_on_the_export_equals_our_fp32_engine_for_every_task(original_dir: Path, onnx_dir: Path,
                                                                seqs: list[list[int]]) -> None:
    lowest = onnx_export.verify(str(original_dir), onnx_dir, seqs)  # the lowest cosine per task
    assert len(lowest) == 5 and min(lowest.values()) >= 0.99999, lowest
    session = onnx_export.ort_session(onnx_dir, threads=1)
    # the adapters are really selected by task_id: two tasks give different vectors
    a, b = (onnx_export.pooled(session, seqs, i) for i in (0, 4))
    assert not np.allclose(a, b, atol=1e-4)


def test_int8_export_is_quantised_runs_and_is_written_once(onnx_dir: Path) -> None:
    path = onnx_export.quantize_int8(onnx_dir)
    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops, ops  # int8 GEMMs, activations quantised per call
    stamp = path.stat().st_mtime_ns
    assert onnx_export.quantize_int8(onnx_dir) == path and path.stat().st_mtime_ns == stamp
    exact = onnx_export.pooled(onnx_export.ort_session(onnx_dir, threads=1), SEQS, 4)
    int8 = onnx_export.pooled(onnx_export.ort_session(onnx_dir, threads=1, file=onnx_export.INT8_FILE), SEQS, 4)
    cos = (exact * int8).sum(1) / (np.linalg.norm(exact, axis=1) * np.linalg.norm(int8, axis=1))
    assert cos.min() > 0.99 and not np.array_equal(exact, int8), cos  # close, and really another computation

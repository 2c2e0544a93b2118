"""The ``bge-m3`` engine equals FlagEmbedding's ``BGEM3FlagModel`` on a random checkpoint in the
published layout: dense (CLS), sparse (lexical weights) and multi-vector (ColBERT) outputs."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine_hf.bge_m3 import BGEM3Engine, BGEM3Settings, build
from engine_hf.bge_m3.outputs import lexical_weights
from engine_hf.checkpoint import CheckpointError
from gateway.contract import (
    DENSE,
    MULTIVECTOR,
    OUTPUTS,
    SPARSE,
    EmbedJob,
    EmbedResult,
    Engine,
    InputTooLongError,
    TooManyTokensError,
    UnsupportedTaskError,
)
from tests.support.harness import LoopThread

ALL = frozenset(OUTPUTS)

TEXTS = [
    "the user likes coffee in the morning",
    "hello",
    "der Benutzer mag Kaffee und Musik in der Stadt am Wochenende, the jazz piano and a book about paris",
    "用户喜欢咖啡",
    "coffee coffee coffee tea coffee",  # one id several times: the largest weight is kept
    "a <pad> inside the text",  # a literal pad token is a real token: attended, but never a lexical weight
    "",  # <s></s> only
    "<unk><pad></s>",  # special tokens only
]


@pytest.fixture(scope="module")
def m3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine_hf.tools.bge_m3_checkpoint import write_bge_m3_checkpoint

    return write_bge_m3_checkpoint(tmp_path_factory.mktemp("bge-m3") / "tiny", seed=1)


@pytest.fixture(scope="module")
def flag(m3_dir: Path) -> Any:
    """The reference, exactly as its model card calls it (fp32 on the CPU)."""
    from FlagEmbedding import BGEM3FlagModel

    return BGEM3FlagModel(str(m3_dir), use_fp16=False, devices="cpu")


def reference(flag: Any, texts: list[str], max_length: int = 8192) -> dict[str, Any]:
    out: dict[str, Any] = flag.encode(
        texts, max_length=max_length, return_dense=True, return_sparse=True, return_colbert_vecs=True
    )
    return out


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


def started(loop: LoopThread, path: Path, **overrides: Any) -> BGEM3Engine:
    engine = build(BGEM3Settings(model=str(path), device="cpu", **overrides), name="m3")
    assert isinstance(engine, BGEM3Engine) and isinstance(engine, Engine)
    loop.run(engine.start())
    return engine


@pytest.fixture(scope="module")
def engine(loop: LoopThread, m3_dir: Path) -> Iterator[BGEM3Engine]:
    e = started(loop, m3_dir)
    yield e
    loop.run(e.aclose())


def embed(loop: LoopThread, engine: BGEM3Engine, inputs: list[Any], **job: Any) -> EmbedResult:
    return loop.run(engine.embed(EmbedJob(inputs, None, **job)))


def assert_same(result: EmbedResult, ref: dict[str, Any]) -> None:
    """Dense: cosine >= 0.99999 once ours is normalised (the gateway's step); sparse: the same ids,
    weights to 1e-5; multi-vector: the same rows, elementwise to 1e-5."""
    ours = result.vectors / np.linalg.norm(result.vectors, axis=1, keepdims=True)
    cos = np.sum(ours * ref["dense_vecs"], axis=1)
    assert np.all(cos >= 0.99999), cos
    assert result.sparse is not None and result.multivectors is not None
    assert len(result.sparse) == len(result.multivectors) == len(ref["lexical_weights"])
    for sv, lw in zip(result.sparse, ref["lexical_weights"], strict=True):
        assert sv.indices.dtype == np.int64 and sv.values.dtype == np.float32
        assert list(sv.indices) == sorted(int(k) for k in lw)  # ascending, the reference's ids
        np.testing.assert_allclose(sv.values, [lw[str(i)] for i in sv.indices], atol=1e-5, rtol=0)
    for mv, cv in zip(result.multivectors, ref["colbert_vecs"], strict=True):
        assert mv.dtype == np.float32 and mv.shape == cv.shape
        np.testing.assert_allclose(mv, cv, atol=1e-5, rtol=0)


def test_all_three_outputs_equal_flagembedding(loop: LoopThread, engine: BGEM3Engine, flag: Any) -> None:
    result = embed(loop, engine, TEXTS, outputs=ALL)
    ref = reference(flag, TEXTS)
    assert_same(result, ref)
    tokens = [len(ids) for ids in flag.tokenizer(TEXTS)["input_ids"]]
    assert result.token_counts == tuple(tokens)
    # multi-vector rows: every token but <s> (</s> kept)
    assert [len(m) for m in result.multivectors or ()] == [n - 1 for n in tokens]
    # the fixture is worth testing: many weights kept, and some tokens dropped by the ReLU
    assert result.sparse is not None
    distinct = [len(set(ids) - {0, 1, 2, 3}) for ids in flag.tokenizer(TEXTS)["input_ids"]]
    assert sum(len(s.indices) for s in result.sparse) > 10
    assert any(len(s.indices) < n for s, n in zip(result.sparse, distinct, strict=True))
    assert len(result.sparse[-1].indices) == 0 and len(result.sparse[-2].indices) == 0  # specials only


@pytest.fixture(scope="module")
def padded_engine(loop: LoopThread, m3_dir: Path) -> Iterator[BGEM3Engine]:
    e = started(loop, m3_dir, attention="padded", own_process=False)  # the tests read its model
    yield e
    loop.run(e.aclose())


def test_padded_attention_equals_flagembedding_too(loop: LoopThread, padded_engine: BGEM3Engine, flag: Any) -> None:
    assert padded_engine.model is not None and not padded_engine.model.packed
    assert padded_engine.capabilities.identity is not None and "|padded|" in padded_engine.capabilities.identity
    assert_same(embed(loop, padded_engine, TEXTS, outputs=ALL), reference(flag, TEXTS))


@pytest.mark.parametrize("attention", ["packed", "padded"])
def test_one_pass_of_very_different_lengths(
    loop: LoopThread, m3_dir: Path, padded_engine: BGEM3Engine, flag: Any, attention: str
) -> None:
    """The model's pass itself, packed (the default on a CPU) and padded: a 2-token input beside a
    long one, sparse asked of one only."""
    engine = started(loop, m3_dir, own_process=False) if attention == "packed" else padded_engine
    assert engine.model is not None and engine.text is not None
    assert engine.model.packed == (attention == "packed")
    texts = [TEXTS[2] * 3, "", TEXTS[1], TEXTS[4]]
    seqs = [e.ids for e in engine.text.encode(texts, None, truncate=False)]
    assert max(map(len, seqs)) > 4 * min(map(len, seqs))
    wants = [frozenset({SPARSE, MULTIVECTOR}), frozenset({MULTIVECTOR}), frozenset(), frozenset({SPARSE, MULTIVECTOR})]
    out = engine.model.forward(seqs, wants)
    ref = reference(flag, texts)
    for o, w, i in zip(out, wants, range(len(texts)), strict=True):
        assert np.dot(o.dense / np.linalg.norm(o.dense), ref["dense_vecs"][i]) >= 0.99999
        assert (o.sparse is not None) == (SPARSE in w) and (o.multivector is not None) == (MULTIVECTOR in w)
        if o.sparse is not None:
            assert o.sparse.as_dict().keys() == {int(k) for k in ref["lexical_weights"][i]}
            np.testing.assert_allclose(
                o.sparse.values, [ref["lexical_weights"][i][str(k)] for k in o.sparse.indices], atol=1e-5
            )
        if o.multivector is not None:
            np.testing.assert_allclose(o.multivector, ref["colbert_vecs"][i], atol=1e-5)
    if engine is not padded_engine:
        loop.run(engine.aclose())


def test_a_repeated_token_keeps_its_largest_weight(loop: LoopThread, engine: BGEM3Engine, flag: Any) -> None:
    import torch

    text = TEXTS[4]
    inputs = flag.tokenizer([text], return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    with torch.no_grad():  # the reference's own per-token weights (before it folds them)
        per_token = flag.model(inputs, return_dense=False, return_sparse=True)["sparse_vecs"][0, :, 0].numpy()
    repeated = max(set(ids[1:-1]), key=ids.count)
    weights = [float(w) for t, w in zip(ids, per_token, strict=True) if t == repeated]
    assert len(weights) >= 3 and max(weights) > 0 and len(set(weights)) == len(weights)  # occurrences differ
    sparse = embed(loop, engine, [text], outputs=frozenset({SPARSE})).sparse
    assert sparse is not None
    assert sparse[0].as_dict()[repeated] == pytest.approx(max(weights), abs=1e-5)


def test_token_id_inputs_equal_their_text(loop: LoopThread, engine: BGEM3Engine, flag: Any) -> None:
    ids = tuple(flag.tokenizer([TEXTS[0]], add_special_tokens=False)["input_ids"][0])
    by_ids = embed(loop, engine, [ids], outputs=ALL)
    assert_same(by_ids, reference(flag, [TEXTS[0]]))


def test_over_long_input_is_an_error_unless_truncated(loop: LoopThread, m3_dir: Path, flag: Any) -> None:
    short = started(loop, m3_dir, max_input_tokens=12)
    try:
        assert short.capabilities.max_input_tokens == 12
        with pytest.raises(InputTooLongError) as err:
            embed(loop, short, [TEXTS[1], TEXTS[2]], outputs=ALL)
        assert err.value.index == 1 and err.value.limit == 12
        result = embed(loop, short, [TEXTS[1], TEXTS[2]], outputs=ALL, truncate=True)
        # truncation keeps the first tokens and </s>, as the reference's max_length does
        assert_same(result, reference(flag, [TEXTS[1], TEXTS[2]], max_length=12))
        assert result.token_counts[1] == 12
    finally:
        loop.run(short.aclose())


def test_the_request_token_limit_is_checked_before_queuing(loop: LoopThread, engine: BGEM3Engine) -> None:
    with pytest.raises(TooManyTokensError):
        embed(loop, engine, TEXTS[:3], max_total_tokens=10)


def test_only_the_outputs_asked_for_are_returned(loop: LoopThread, engine: BGEM3Engine, flag: Any) -> None:
    async def both() -> tuple[EmbedResult, ...]:  # one dense-only and one full job, batched together
        return tuple(await asyncio.gather(
            engine.embed(EmbedJob(TEXTS[:3], None)),
            engine.embed(EmbedJob(TEXTS[:3], None, outputs=frozenset({DENSE, SPARSE}))),
            engine.embed(EmbedJob(TEXTS[:3], None, outputs=frozenset({MULTIVECTOR}))),
        ))

    dense, sparse, multi = loop.run(both())
    assert dense.sparse is None and dense.multivectors is None
    assert sparse.sparse is not None and len(sparse.sparse) == 3 and sparse.multivectors is None
    assert multi.sparse is None and multi.multivectors is not None and len(multi.multivectors) == 3
    ref = reference(flag, TEXTS[:3])
    for r in (dense, sparse, multi):  # dense always
        ours = r.vectors / np.linalg.norm(r.vectors, axis=1, keepdims=True)
        assert np.all(np.sum(ours * ref["dense_vecs"], axis=1) >= 0.99999)


def test_a_task_or_late_chunking_is_refused(loop: LoopThread, engine: BGEM3Engine) -> None:
    with pytest.raises(UnsupportedTaskError):
        loop.run(engine.embed(EmbedJob(["x"], "retrieval.query")))
    with pytest.raises(UnsupportedTaskError):
        loop.run(engine.embed(EmbedJob(["x", "y"], None, late_chunking=True)))


def test_capabilities(engine: BGEM3Engine, m3_dir: Path) -> None:
    import torch
    from transformers import XLMRobertaModel

    caps = engine.capabilities
    assert caps.tasks == frozenset({None})
    assert caps.outputs == ALL and caps.matryoshka is False
    config = json.loads((m3_dir / "config.json").read_text())
    assert (caps.dimensions, caps.vocab_size) == (config["hidden_size"], config["vocab_size"]) == (64, 1201)
    assert caps.max_input_tokens == 8192  # 8194 positions, less XLM-R's offset of 2
    assert caps.late_chunking is False and caps.token_embeddings is False and caps.token_ids is True
    # resident bytes: the encoder (no pooler) and both heads, as loaded
    encoder = XLMRobertaModel.from_pretrained(str(m3_dir), add_pooling_layer=False, dtype=torch.float32)
    heads = sum(t.numel() * 4 for f in ("sparse_linear.pt", "colbert_linear.pt")
                for t in torch.load(m3_dir / f, weights_only=True).values())
    params = sum(t.numel() * t.element_size() for t in [*encoder.parameters(), *encoder.buffers()])
    assert caps.resident_bytes == params + heads
    assert caps.identity is not None and caps.identity.startswith("bge-m3|sha256:")
    assert "|float32|" in caps.identity and caps.identity.endswith("|cpu|packed|max_input_tokens=8192")


def test_the_identity_follows_the_heads(loop: LoopThread, m3_dir: Path, tmp_path: Path) -> None:
    """The content hash covers the two .pt heads: new head weights are new outputs (the cache key)."""
    import torch

    from engine_hf.bge_m3.checkpoint import fingerprint, locate_checkpoint

    copy = Path(shutil.copytree(m3_dir, tmp_path / "copy"))

    def weights_id(path: Path) -> str:
        return fingerprint(locate_checkpoint(str(path), revision=None, cache_dir=None, local_files_only=True))

    assert weights_id(copy) == weights_id(m3_dir)
    state = torch.load(copy / "sparse_linear.pt", weights_only=True)
    state["bias"] = state["bias"] + 1e-3
    torch.save(state, copy / "sparse_linear.pt")
    assert weights_id(copy) != weights_id(m3_dir)


def test_a_checkpoint_without_its_heads_does_not_load(loop: LoopThread, m3_dir: Path, tmp_path: Path) -> None:
    """FlagEmbedding would start untrained heads and serve random sparse/multi-vector outputs."""
    copy = Path(shutil.copytree(m3_dir, tmp_path / "no-heads"))
    (copy / "colbert_linear.pt").unlink()
    engine = BGEM3Engine(BGEM3Settings(model=str(copy), device="cpu"))
    with pytest.raises(CheckpointError, match="colbert_linear.pt"):
        loop.run(engine.start())
    health = loop.run(engine.check_health())
    assert not health.ok and "colbert_linear.pt" in health.detail
    loop.run(engine.aclose())


def test_lexical_weights_rule() -> None:
    ids = np.array([0, 7, 5, 7, 3, 9, 2, 1], dtype=np.int64)
    weights = np.array([9.0, 0.2, 0.5, 0.7, 4.0, 0.0, 3.0, 8.0], dtype=np.float32)
    sv = lexical_weights(ids, weights, {0, 1, 2, 3})
    assert sv.as_dict() == {5: pytest.approx(0.5), 7: pytest.approx(0.7)}  # specials and zeros gone, max kept
    assert list(sv.indices) == [5, 7]


def test_the_package_and_its_settings_import_without_torch() -> None:
    """The gateway's registry imports the kind to read its settings; torch loads only with an engine."""
    import subprocess
    import sys

    code = (
        "import sys, engine_hf.bge_m3 as m, engine_hf.bge_m3.settings as s;"
        "assert s.BGEM3Settings().kind == 'bge-m3' and m.BGEM3Settings is s.BGEM3Settings and callable(m.build);"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_cpu_kernels_onednn_stays_exact_and_int8_says_so(loop: LoopThread, m3_dir: Path, flag: Any) -> None:
    """The encoder's linear layers run on the shared CPU kernels: oneDNN keeps fp32 exact; int8 is
    lossy and is served (and cached) under its own name."""
    onednn = started(loop, m3_dir, cpu_kernels="onednn")
    int8 = started(loop, m3_dir, dtype="int8")
    try:
        assert_same(embed(loop, onednn, TEXTS[:4], outputs=ALL), reference(flag, TEXTS[:4]))
        result = embed(loop, int8, TEXTS[:4], outputs=ALL)
        assert result.engine == "m3:int8"
        assert int8.capabilities.identity is not None and "|kernels=int8|" in int8.capabilities.identity
        assert (int8.capabilities.resident_bytes or 0) < (onednn.capabilities.resident_bytes or 0)
    finally:
        loop.run(onednn.aclose())
        loop.run(int8.aclose())

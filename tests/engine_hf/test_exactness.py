"""The HF engine equals the independent fp32 reference, for every task and no task, in both
layouts, with and without Matryoshka dimensions and normalisation; and batching never changes a
text's vector."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from gateway.contract import EmbedJob, Task
from gateway.serving.postprocess import finalize
from tests.engine_hf.conftest import HF_VARIANTS, start_engine
from tests.support.harness import LoopThread, cosine

TEXTS = [
    "the user likes coffee in the morning",
    "người dùng thích cà phê và đi dạo",
    "用户喜欢咖啡",
    "x",
    " ".join(["memory project deadline friday weekend travel"] * 30),
]
TASK_CASES = [None, *Task]


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    for a, e in zip(actual, expected, strict=True):
        assert cosine(a, e) >= 0.99999
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    assert np.abs(unit(actual) - unit(expected)).max() <= 1e-4


@pytest.fixture(scope="module", params=[("original", "packed"), ("hf", "padded")], ids=lambda p: "-".join(p))
def engine(request: pytest.FixtureRequest, loop: LoopThread, checkpoints: dict[str, Path]):  # type: ignore[no-untyped-def]
    layout, attention = request.param
    eng = start_engine(loop, checkpoints[layout], attention=attention)
    yield eng
    loop.run(eng.aclose())


@pytest.mark.parametrize("task", TASK_CASES, ids=lambda t: t.value if t else "none")
@pytest.mark.parametrize("dimensions", [None, 16])
@pytest.mark.parametrize("normalized", [True, False])
def test_engine_matches_reference(engine, loop, reference, task, dimensions, normalized) -> None:  # type: ignore[no-untyped-def]
    result = loop.run(engine.embed(EmbedJob(inputs=TEXTS, task=task)))
    actual = finalize(result.vectors, dimensions, normalized)
    expected = reference.encode(TEXTS, task.value if task else None, dimensions, normalized)
    assert_close(actual, expected)
    if not normalized:  # the raw scale is part of the contract too
        np.testing.assert_allclose(np.linalg.norm(actual, axis=1), np.linalg.norm(expected, axis=1), rtol=1e-4)
    if normalized:
        np.testing.assert_allclose(np.linalg.norm(actual, axis=1), 1.0, atol=1e-5)
    # usage counts this model's tokens, instruction and special tokens included
    assert result.token_counts == tuple(len(reference.token_ids(t, task.value if task else None)) for t in TEXTS)


def test_tasks_really_differ(engine, loop) -> None:  # type: ignore[no-untyped-def]
    """Guards against an adapter silently not being applied (all tasks equal to base)."""
    vecs = [loop.run(engine.embed(EmbedJob(inputs=TEXTS[:1], task=t))).vectors[0] for t in TASK_CASES]
    for i in range(len(vecs)):
        for j in range(i + 1, len(vecs)):
            assert cosine(vecs[i], vecs[j]) < 0.999


def test_both_layouts_give_identical_vectors(loop, checkpoints) -> None:  # type: ignore[no-untyped-def]
    engines = [start_engine(loop, checkpoints[layout]) for layout in ("original", "hf")]
    try:
        for task in TASK_CASES:
            a, b = (loop.run(e.embed(EmbedJob(inputs=TEXTS, task=task))).vectors for e in engines)
            np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    finally:
        for e in engines:
            loop.run(e.aclose())


def test_every_hf_variant_gives_the_original_layouts_vectors(loop, checkpoints, hf_variants, reference) -> None:  # type: ignore[no-untyped-def]
    """Native or original-style base names, config with or without the original's extra keys: the
    same vectors as the original layout, and the reference's, for every task and no task."""
    original = start_engine(loop, checkpoints["original"])
    try:
        expected = {t: loop.run(original.embed(EmbedJob(inputs=TEXTS, task=t))).vectors for t in TASK_CASES}
    finally:
        loop.run(original.aclose())
    for variant in HF_VARIANTS:
        engine = start_engine(loop, hf_variants[variant])
        try:
            for task in TASK_CASES:
                got = loop.run(engine.embed(EmbedJob(inputs=TEXTS, task=task))).vectors
                np.testing.assert_allclose(got, expected[task], atol=1e-6, rtol=0, err_msg=f"{variant} {task}")
                want = reference.encode(TEXTS, task.value if task else None, None, False)
                assert_close(finalize(got, None, False), want)
        finally:
            loop.run(engine.aclose())


@pytest.mark.parametrize("adapter_mode", ["rowwise", "merged"])
@pytest.mark.parametrize("attention", ["packed", "padded"])
def test_batch_invariance_mixed_tasks_and_lengths(loop, original_dir, reference, adapter_mode, attention) -> None:  # type: ignore[no-untyped-def]
    """Concurrent requests of different tasks and lengths are batched together; every text's vector
    equals its vector when embedded alone (and the reference's)."""
    engine = start_engine(
        loop, original_dir, adapter_mode=adapter_mode, attention=attention, max_batch_tokens=100000
    )
    rng = random.Random(7)
    jobs = [EmbedJob(inputs=[t], task=rng.choice(TASK_CASES)) for t in TEXTS * 3]
    try:
        alone = [loop.run(engine.embed(j)).vectors[0] for j in jobs]

        async def together() -> list[np.ndarray]:
            import asyncio

            results = await asyncio.gather(*(engine.embed(j) for j in jobs))
            return [r.vectors[0] for r in results]

        batches_before = engine._scheduler.batches
        mixed = loop.run(together())
        # they really were batched together (fewer forward passes than jobs)
        assert engine._scheduler.batches - batches_before < len(jobs)
        for job, a, m in zip(jobs, alone, mixed, strict=True):
            assert cosine(a, m) >= 0.99999
            ref = reference.encode(list(job.inputs), job.task.value if job.task else None, None, False)[0]
            assert cosine(m, ref) >= 0.99999
    finally:
        loop.run(engine.aclose())


def test_peft_reference_for_hf_layout(loop, hf_dir) -> None:  # type: ignore[no-untyped-def]
    """transformers + PEFT's own loading of the files they wrote agrees with our reading of the -hf
    layout, for every task."""
    import torch
    from transformers import AutoTokenizer, JinaEmbeddingsV3Model

    engine = start_engine(loop, hf_dir)
    try:
        for task in Task:
            folder = task.value.replace(".", "_").replace("-", "_")
            model = JinaEmbeddingsV3Model.from_pretrained(str(hf_dir), dtype=torch.float32)
            model.load_adapter(str(hf_dir / folder), adapter_name=folder)
            model.set_adapter(folder)
            model.eval()
            tok = AutoTokenizer.from_pretrained(str(hf_dir))
            prefix = engine.text.prefix(task)
            batch = tok([prefix + t for t in TEXTS], padding=True, return_tensors="pt")
            with torch.no_grad():
                h = model(**batch).last_hidden_state
            m = batch["attention_mask"].unsqueeze(-1).float()
            expected = ((h * m).sum(1) / m.sum(1)).numpy()
            actual = loop.run(engine.embed(EmbedJob(inputs=TEXTS, task=task))).vectors
            for a, e in zip(actual, expected, strict=True):
                assert cosine(a, e) >= 0.99999
    finally:
        loop.run(engine.aclose())


def test_fixture_is_sensitive_to_positions(reference) -> None:  # type: ignore[no-untyped-def]
    """The tiny random model must not ignore positions, or a RoPE bug would pass the tests above:
    a wrong rotary base (the original config class's 10000 default) must move vectors well past
    the 0.99999 tolerance."""
    long_text = TEXTS[-1]
    right = reference.pooled(long_text, "text-matching")
    base = reference.config["rotary_emb_base"]
    reference.config["rotary_emb_base"] = 10000.0
    try:
        wrong = reference.pooled(long_text, "text-matching")
    finally:
        reference.config["rotary_emb_base"] = base
    assert cosine(right, wrong) < 0.9999


def test_compiled_model_gives_the_same_vectors(loop, original_dir, reference) -> None:  # type: ignore[no-untyped-def]
    """engines.hf.compile runs correctly on CPU (the GPU figures come from a GPU machine)."""
    engine = start_engine(loop, original_dir, compile="default", attention="padded")
    try:
        got = loop.run(engine.embed(EmbedJob(inputs=TEXTS[:2], task=Task.RETRIEVAL_QUERY))).vectors
    finally:
        loop.run(engine.aclose())
    want = reference.encode(TEXTS[:2], "retrieval.query", None, False)
    for g, w in zip(got, want, strict=True):
        assert cosine(g, w) >= 0.99999

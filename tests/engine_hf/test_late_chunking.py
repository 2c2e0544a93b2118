"""Late chunking in the HF engine equals the published algorithm computed on the independent fp32
reference's token states (tests/support/late_reference.py): one pass, windows (long late
chunking, also beyond the real 8192-token limit), the chunking rules, and every waiter resolved."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from gateway.contract import ChunkingRule, EmbedJob, InvalidRequestError, Task
from gateway.serving.postprocess import finalize
from tests.engine_hf.conftest import start_engine
from tests.support import late_reference as lr
from tests.support.harness import LoopThread, cosine

CHUNK_SETS = {
    "en": ["Berlin is the capital of Germany.", "It has about four million people.", "The city is also a state."],
    "vi": ["người dùng thích cà phê.", "họ làm việc ở thành phố.", "cuối tuần họ đi du lịch."],
    "zh": ["用户喜欢咖啡。", "他住在城市。", "周末旅行。"],
    "mixed": ["the user likes coffee 用户喜欢咖啡", "  người dùng thích cà phê  ", "music 音乐!"],
}
TASKS = [Task.RETRIEVAL_PASSAGE, None, Task.TEXT_MATCHING, Task.RETRIEVAL_QUERY]
LONG = " ".join(
    f"memory {w} project deadline friday weekend travel paris {w} coffee." for w in ("one", "two", "three", "four", "five")
)


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    for a, e in zip(actual, expected, strict=True):
        assert cosine(a, e) >= 0.99999
    np.testing.assert_allclose(finalize(actual, None, True), finalize(expected, None, True), atol=1e-4, rtol=0)


def tv(task: Task | None) -> str | None:
    return task.value if task else None


@pytest.fixture(scope="module")
def engine(loop: LoopThread, original_dir: Path):  # type: ignore[no-untyped-def]
    eng = start_engine(loop, original_dir)
    yield eng
    loop.run(eng.aclose())


@pytest.mark.parametrize("task", TASKS, ids=lambda t: tv(t) or "none")
@pytest.mark.parametrize("name", list(CHUNK_SETS))
def test_late_chunking_equals_span_pooling_of_one_pass(engine, loop, reference, task, name) -> None:  # type: ignore[no-untyped-def]
    chunks = CHUNK_SETS[name]
    result = loop.run(engine.embed(EmbedJob(inputs=chunks, task=task, late_chunking=True)))
    assert_close(result.vectors, lr.late_chunk(reference, chunks, tv(task)))
    spans = lr.chunk_spans(reference, chunks, tv(task))
    assert result.token_counts == tuple(b - a for a, b in spans)
    assert sum(result.token_counts) == len(lr.document_ids(reference, chunks, tv(task)))


@pytest.mark.parametrize("task", [Task.RETRIEVAL_PASSAGE, None])
def test_one_chunk_equals_embedding_it_alone(engine, loop, reference, task) -> None:  # type: ignore[no-untyped-def]
    for text in (CHUNK_SETS["en"][0], CHUNK_SETS["zh"][1], LONG):
        late = loop.run(engine.embed(EmbedJob(inputs=[text], task=task, late_chunking=True))).vectors
        plain = loop.run(engine.embed(EmbedJob(inputs=[text], task=task))).vectors
        assert_close(late, reference.encode([text], tv(task), normalize=False))
        assert_close(late, plain)


def test_a_chunk_vector_carries_its_context(engine, loop, reference) -> None:  # type: ignore[no-untyped-def]
    """The point of late chunking: "It has about four million people." embedded inside its document
    is not the same vector as embedded alone."""
    chunks = CHUNK_SETS["en"]
    late = loop.run(engine.embed(EmbedJob(inputs=chunks, task=Task.RETRIEVAL_PASSAGE, late_chunking=True))).vectors
    alone = reference.encode(chunks, "retrieval.passage", normalize=False)
    for i in range(len(chunks)):
        assert cosine(late[i], alone[i]) < 0.999, i


def test_whitespace_only_chunk_is_a_clear_error(engine, loop) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRequestError) as err:
        loop.run(engine.embed(EmbedJob(inputs=["fine", "   ", "also fine"], task=None, late_chunking=True)))
    assert err.value.param == "input[1]" and err.value.code == "empty_chunk"


# ------------------------------------------------------------------ long late chunking


@pytest.mark.parametrize(("window", "overlap", "attention"), [(16, 4, "packed"), (24, 0, "padded"), (20, 10, "padded")])
def test_long_late_chunking_equals_windowed_reference(loop, original_dir, reference, window, overlap, attention) -> None:  # type: ignore[no-untyped-def]
    engine = start_engine(loop, original_dir, late_chunking_window_tokens=window, late_chunking_overlap_tokens=overlap,
                          attention=attention)
    try:
        chunks = [s for s in LONG.split(". ") if s]
        for task in (Task.RETRIEVAL_PASSAGE, None):
            n = len(lr.document_ids(reference, chunks, tv(task)))
            assert n > 2 * window  # at least three windows
            result = loop.run(engine.embed(EmbedJob(inputs=chunks, task=task, late_chunking=True)))
            windowed = lr.late_chunk(reference, chunks, tv(task), window, overlap)
            assert_close(result.vectors, windowed)
            # the windows really changed something: one pass over the whole document differs
            one_pass = lr.late_chunk(reference, chunks, tv(task))
            assert min(cosine(a, b) for a, b in zip(result.vectors, one_pass, strict=True)) < 0.9999
            assert sum(result.token_counts) == n
    finally:
        loop.run(engine.aclose())


def test_long_late_chunking_beyond_the_real_8192_limit(engine, loop, reference) -> None:  # type: ignore[no-untyped-def]
    """Default settings (window = model maximum 8192, overlap 512) on a ~9000-token document."""
    sentence = "the user likes coffee in the morning and works at a company in paris"
    chunks = [f"{sentence} {i % 7} {sentence}." for i in range(300)]
    ids = lr.document_ids(reference, chunks, "retrieval.passage")
    assert 8192 < len(ids) < 2 * 8192 - 512, len(ids)
    started = time.perf_counter()
    result = loop.run(engine.embed(EmbedJob(inputs=chunks, task=Task.RETRIEVAL_PASSAGE, late_chunking=True)), timeout=600)
    elapsed = time.perf_counter() - started
    expected = lr.late_chunk(reference, chunks, "retrieval.passage", window=8192, overlap=512)
    assert_close(result.vectors, expected)
    assert sum(result.token_counts) == len(ids)
    print(f"\n{len(ids)} tokens, 2 windows of <= 8192: {elapsed:.1f}s on the tiny model")


def test_cap_on_late_chunking_tokens(loop, original_dir, reference) -> None:  # type: ignore[no-untyped-def]
    chunks = CHUNK_SETS["en"]
    n = len(lr.document_ids(reference, chunks, None))
    at_cap = start_engine(loop, original_dir, max_late_chunking_tokens=n, late_chunking_window_tokens=8)
    below = start_engine(loop, original_dir, max_late_chunking_tokens=n - 1)
    try:
        ok = loop.run(at_cap.embed(EmbedJob(inputs=chunks, task=None, late_chunking=True)))
        assert_close(ok.vectors, lr.late_chunk(reference, chunks, None, window=8, overlap=0))
        with pytest.raises(InvalidRequestError) as err:
            loop.run(below.embed(EmbedJob(inputs=chunks, task=None, late_chunking=True)))
        assert err.value.code == "late_chunking_too_long" and str(n) in err.value.message
    finally:
        loop.run(at_cap.aclose())
        loop.run(below.aclose())


@pytest.mark.parametrize("attention", ["packed", "padded"])
def test_windows_batch_with_other_work_and_every_result_is_unchanged(loop, original_dir, attention) -> None:  # type: ignore[no-untyped-def]
    engine = start_engine(loop, original_dir, late_chunking_window_tokens=16, late_chunking_overlap_tokens=4,
                          max_batch_tokens=100000, attention=attention)
    chunks = [s for s in LONG.split(". ") if s]
    jobs = [
        EmbedJob(inputs=chunks, task=Task.RETRIEVAL_PASSAGE, late_chunking=True),
        EmbedJob(inputs=["short text", "another one"], task=Task.TEXT_MATCHING),
        EmbedJob(inputs=CHUNK_SETS["vi"], task=None, late_chunking=True),
        EmbedJob(inputs=[LONG], task=Task.SEPARATION, late_chunking=True, chunking=ChunkingRule("tokens", 7, 2)),
        EmbedJob(inputs=["用户喜欢咖啡"], task=Task.RETRIEVAL_QUERY),
    ]
    try:
        alone = [loop.run(engine.embed(j)).vectors for j in jobs]

        async def together() -> list[np.ndarray]:
            return [r.vectors for r in await asyncio.gather(*(engine.embed(j) for j in jobs))]

        before = engine._scheduler.batches
        mixed = loop.run(together())
        assert engine._scheduler.batches - before < len(jobs)  # windows shared forward passes
        for a, m in zip(alone, mixed, strict=True):
            for x, y in zip(a, m, strict=True):
                assert cosine(x, y) >= 0.99999
    finally:
        loop.run(engine.aclose())


# ------------------------------------------------------------------ chunking rules


DOCS = [
    "Berlin is the capital of Germany. It has about four million people! Is it a state? Yes.",
    "用户喜欢咖啡。他住在城市！周末旅行。Người dùng thích cà phê. Họ sống ở thành phố.",
    "Title line\n\nFirst paragraph, one sentence.  Second sentence…  Third",
]
RULES = [ChunkingRule("sentences"), ChunkingRule("sentences", 2), ChunkingRule("tokens", 6, 2), ChunkingRule("tokens", 5)]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.kind}-{r.size}-{r.overlap}")
@pytest.mark.parametrize("doc", range(len(DOCS)))
def test_chunking_rules_equal_reference(engine, loop, reference, rule, doc) -> None:  # type: ignore[no-untyped-def]
    text = DOCS[doc]
    result = loop.run(engine.embed(EmbedJob(inputs=[text], task=Task.RETRIEVAL_PASSAGE, late_chunking=True, chunking=rule)))
    ranges, expected = lr.rule_reference(reference, text, "retrieval.passage", rule)
    assert list(result.spans or ()) == ranges
    assert_close(result.vectors, expected)
    assert sum(result.token_counts) == len(lr.document_ids(reference, [text], "retrieval.passage"))
    if rule.kind == "sentences":
        assert all(not text[a].isspace() and not text[b - 1].isspace() for a, b in ranges)


def test_sentence_chunks_of_a_joined_document_equal_late_chunking_its_sentences(engine, loop) -> None:  # type: ignore[no-untyped-def]
    """The chunk endpoint and Jina's late_chunking agree when sentences are separated by one space."""
    chunks = CHUNK_SETS["en"]
    a = loop.run(engine.embed(EmbedJob(inputs=chunks, task=Task.RETRIEVAL_PASSAGE, late_chunking=True))).vectors
    b = loop.run(engine.embed(EmbedJob(inputs=[" ".join(chunks)], task=Task.RETRIEVAL_PASSAGE, late_chunking=True,
                                       chunking=ChunkingRule("sentences")))).vectors
    assert_close(a, b)

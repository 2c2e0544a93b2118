"""Late chunking bookkeeping (pure): windows give every token exactly one output, segment sums
recombine into span means, and chunk spans match the reference's incremental tokenisation on
multi-byte text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine_hf.late_chunking import (
    EmptyChunkError,
    combine,
    plan_windows,
    spans_from_char_starts,
    spans_from_token_ranges,
    window_segments,
)
from engine_hf.tokenization import TextEncoder, load_tokenizer
from gateway.contract import Task
from tests.support import late_reference as lr


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 400), st.integers(2, 64), st.data())
def test_windows_give_every_token_exactly_one_output(n: int, window: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, window // 2))
    windows = plan_windows(n, window, overlap)
    kept = [t for w in windows for t in range(w.keep, w.end)]
    assert kept == list(range(n))  # a partition, in order
    assert windows[0].start == windows[0].keep == 0 and windows[-1].end == n
    for prev, w in zip(windows, windows[1:]):
        assert w.end - w.start <= window
        assert w.keep == w.start + overlap  # the first `overlap` outputs dropped
        assert w.start == prev.start + window - overlap
    if n <= window:
        assert len(windows) == 1


def test_windows_by_hand() -> None:
    assert [(w.start, w.end, w.keep) for w in plan_windows(10, 4, 1)] == [(0, 4, 0), (3, 7, 4), (6, 10, 7)]
    assert [(w.start, w.end, w.keep) for w in plan_windows(9, 4, 1)] == [(0, 4, 0), (3, 7, 4), (6, 9, 7)]
    assert [(w.start, w.end, w.keep) for w in plan_windows(4, 4, 1)] == [(0, 4, 0)]


@settings(max_examples=200, deadline=None)
@given(st.integers(3, 120), st.integers(4, 32), st.data())
def test_segment_sums_recombine_into_span_means(n: int, window: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, window // 2))
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=min(8, n - 1))))
    bounds = [0, *cuts, n]
    spans = list(zip(bounds, bounds[1:]))
    if data.draw(st.booleans()):  # overlapping spans too (token chunking with overlap)
        spans.append((max(0, n // 3), n))
    states = np.random.default_rng(n).standard_normal((n, 6)).astype(np.float32)
    windows = plan_windows(n, window, overlap)
    segments = [window_segments(spans, w) for w in windows]
    # a window's forward pass sees states[start:end]; here the states do not depend on context,
    # which isolates the bookkeeping
    sums = [np.stack([states[w.start + a : w.start + b].sum(0) for _, a, b in segs]) for w, segs in zip(windows, segments)]
    got = combine(spans, segments, sums)
    want = np.stack([states[a:b].mean(0) for a, b in spans])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_combine_refuses_incomplete_coverage() -> None:
    with pytest.raises(AssertionError, match="coverage"):
        combine([(0, 4)], [[(0, 0, 3)]], [np.ones((1, 2), dtype=np.float32)])


def test_char_start_spans_by_hand() -> None:
    # "<s> [instr instr] [a a] [b] </s>": two instruction tokens, then chunk 0 (2 tokens), chunk 1 (1)
    assert spans_from_char_starts([0, 5, 10, 12, 15], [10, 15], 10) == [(0, 5), (5, 7)]
    assert spans_from_char_starts([0, 2], [0, 2], 0) == [(0, 2), (2, 4)]
    with pytest.raises(EmptyChunkError) as err:
        spans_from_char_starts([0, 2], [0, 1, 2], 0)  # chunk 1 owns nothing
    assert err.value.index == 1
    with pytest.raises(EmptyChunkError):
        spans_from_char_starts([0, 5], [10], 10)  # only the instruction


def test_token_range_spans() -> None:
    # 3 instruction tokens, 6 content tokens, chunks of 4 with overlap 2 -> ranges (0,4),(2,6)
    assert spans_from_token_ranges([(0, 4), (2, 6)], 3, 6) == [(0, 8), (6, 11)]


CHUNK_SETS = [
    ["the user likes coffee.", "they work at a company in paris.", "the deadline is friday"],
    ["người dùng thích cà phê", "làm việc ở thành phố", "cuối tuần du lịch"],
    ["用户喜欢咖啡", "住在城市", "周末旅行"],
    ["ユーザーはコーヒーが好きです", "仕事 都市", "犬 猫 散歩"],
    ["Mixed: coffee 用户", "  leading and trailing spaces  ", "tiếng Việt 音乐 music!"],
]


@pytest.mark.parametrize("chunks", CHUNK_SETS, ids=["en", "vi", "zh", "ja", "mixed"])
@pytest.mark.parametrize("task", [None, Task.RETRIEVAL_PASSAGE, Task.RETRIEVAL_QUERY])
def test_spans_match_incremental_tokenisation(original_dir: Path, reference, chunks, task) -> None:  # type: ignore[no-untyped-def]
    """The offset-based assignment the engine uses equals the reference's prefix-tokenisation spans."""
    tok = load_tokenizer(original_dir)
    text = TextEncoder(tok, instructions=_instructions(reference), max_tokens=8192, vocab_size=10**6)
    doc = text.encode_document(" ".join(chunks), task)
    boundaries, pos = [], doc.content_start
    for c in chunks:
        boundaries.append(pos)
        pos += len(c) + 1
    spans = spans_from_char_starts([a for a, _ in doc.offsets], boundaries, doc.content_start)
    assert spans == lr.chunk_spans(reference, chunks, task.value if task else None)
    assert doc.ids == lr.document_ids(reference, chunks, task.value if task else None)


def _instructions(reference) -> dict[Task, str]:  # type: ignore[no-untyped-def]
    return {Task(k): v for k, v in (reference.config.get("task_instructions") or {}).items() if v}

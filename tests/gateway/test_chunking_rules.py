"""The chunking rules of the contract: sentences and token ranges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.contract import ChunkingRule
from gateway.contract.chunking import group_sentences, split_sentences, token_chunks


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


def test_sentences_latin_cjk_and_paragraphs() -> None:
    assert sentences("Hello world. How are you?  Fine!") == ["Hello world.", "How are you?", "Fine!"]
    assert sentences("用户喜欢咖啡。他住在东京！好") == ["用户喜欢咖啡。", "他住在东京！", "好"]
    assert sentences('He said "stop." Then left.') == ['He said "stop."', "Then left."]
    assert sentences("Người dùng thích cà phê. Họ sống ở Hà Nội.") == ["Người dùng thích cà phê.", "Họ sống ở Hà Nội."]
    assert sentences("Title\n\nBody line one\nstill body") == ["Title", "Body line one\nstill body"]
    assert sentences("3.14 is pi... Really") == ["3.14 is pi...", "Really"]  # no space after "3." -> no split
    assert sentences("no terminator at all") == ["no terminator at all"]
    assert sentences("  \n  ") == []


@given(st.text(alphabet=st.sampled_from(list("ab .!?。\n")), max_size=60))
def test_sentence_ranges_are_ordered_trimmed_and_cover_all_text(text: str) -> None:
    ranges = split_sentences(text)
    assert all(a < b for a, b in ranges)
    assert all(ranges[i][1] <= ranges[i + 1][0] for i in range(len(ranges) - 1))
    assert all(not text[a].isspace() and not text[b - 1].isspace() for a, b in ranges)
    covered = "".join(text[a:b] for a, b in ranges)
    assert covered.replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")


def test_group_sentences() -> None:
    s = [(0, 3), (4, 8), (9, 12), (13, 20)]
    assert group_sentences(s, 1) == s
    assert group_sentences(s, 2) == [(0, 8), (9, 20)]
    assert group_sentences(s, 3) == [(0, 12), (13, 20)]


def test_token_chunks() -> None:
    assert token_chunks(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert token_chunks(8, 4, 0) == [(0, 4), (4, 8)]
    assert token_chunks(3, 4, 2) == [(0, 3)]
    assert token_chunks(0, 4, 0) == []


@given(st.integers(0, 200), st.integers(1, 40), st.data())
def test_token_chunks_cover_every_token_with_the_stride(n: int, size: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, size - 1))
    chunks = token_chunks(n, size, overlap)
    covered = {t for a, b in chunks for t in range(a, b)}
    assert covered == set(range(n))
    assert all(b - a <= size for a, b in chunks)
    assert all(chunks[i + 1][0] - chunks[i][0] == size - overlap for i in range(len(chunks) - 1))
    assert not chunks or chunks[-1][1] == n


def test_rule_validation() -> None:
    ChunkingRule("tokens", 8, 7)
    for bad in (("tokens", 0, 0), ("tokens", 4, 4), ("tokens", 4, -1), ("sentences", 2, 1)):
        with pytest.raises(ValueError):
            ChunkingRule(*bad)  # type: ignore[arg-type]

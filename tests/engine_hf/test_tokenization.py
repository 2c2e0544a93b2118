"""Token ids exactly as the reference tokenises: instruction prefix, <s> … </s>, limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from engine_hf.checkpoint import describe_checkpoint
from engine_hf.tokenization import TextEncoder, load_tokenizer
from gateway.contract import InputTooLongError, InvalidRequestError, Task

TEXTS = [
    "The user likes coffee.",
    "  leading and   repeated   spaces ",
    "người dùng thích cà phê",
    "用户喜欢咖啡。ユーザーはコーヒーが好きです",
    "пользователь любит кофе",
    "tab\tand\nnewline",
]


def encoder(path: Path, max_tokens: int = 8192) -> TextEncoder:
    info = describe_checkpoint(path)
    return TextEncoder(load_tokenizer(path), instructions=info.instructions, max_tokens=max_tokens, vocab_size=2000)


@pytest.mark.parametrize("task", [None, Task.RETRIEVAL_QUERY, Task.RETRIEVAL_PASSAGE, Task.TEXT_MATCHING])
def test_ids_match_transformers_tokenizer(original_dir: Path, task: Task | None) -> None:
    enc = encoder(original_dir)
    ref = AutoTokenizer.from_pretrained(str(original_dir))
    prefix = {Task.RETRIEVAL_QUERY: "Represent the query for retrieving evidence documents: ",
              Task.RETRIEVAL_PASSAGE: "Represent the document for retrieval: "}.get(task, "")  # type: ignore[arg-type]
    got = [e.ids for e in enc.encode(TEXTS, task, truncate=False)]
    assert got == [ref(prefix + t)["input_ids"] for t in TEXTS]
    assert all(ids[0] == 0 and ids[-1] == 2 for ids in got)


def test_instructions_come_from_config_and_default_for_hf_layout(original_dir: Path, hf_dir: Path) -> None:
    for path in (original_dir, hf_dir):
        info = describe_checkpoint(path)
        assert info.instructions[Task.RETRIEVAL_QUERY] == "Represent the query for retrieving evidence documents: "
        assert info.instructions[Task.RETRIEVAL_PASSAGE] == "Represent the document for retrieval: "
        assert Task.TEXT_MATCHING not in info.instructions


def test_over_long_input_is_an_error_naming_index_and_count(original_dir: Path) -> None:
    enc = encoder(original_dir, max_tokens=16)
    long = "memory " * 40
    with pytest.raises(InputTooLongError) as err:
        enc.encode(["short", long], None, truncate=False)
    assert err.value.index == 1 and err.value.n_tokens > 16 and err.value.limit == 16
    assert "input[1]" in err.value.message and str(err.value.n_tokens) in err.value.message


def test_truncate_drops_the_tail_and_keeps_eos(original_dir: Path) -> None:
    enc = encoder(original_dir, max_tokens=16)
    ref = AutoTokenizer.from_pretrained(str(original_dir))
    long = "memory project deadline " * 20
    (out,) = enc.encode([long], None, truncate=True)
    assert out.ids == ref(long, truncation=True, max_length=16)["input_ids"]
    assert len(out.ids) == 16 and out.ids[-1] == 2 and out.original_length > 16


def test_left_truncation_keeps_bos_and_the_last_tokens_like_the_tokenizer(original_dir: Path) -> None:
    enc = encoder(original_dir, max_tokens=16)
    ref = AutoTokenizer.from_pretrained(str(original_dir))
    ref.truncation_side = "left"  # TEI's truncation_direction: Left is the tokenizer's left truncation
    long = "memory project deadline " * 20 + "the end"
    (out,) = enc.encode([long], Task.RETRIEVAL_QUERY, truncate=True, direction="left")
    prefix = "Represent the query for retrieving evidence documents: "
    assert out.ids == ref(prefix + long, truncation=True, max_length=16)["input_ids"]
    assert len(out.ids) == 16 and out.ids[0] == 0 and out.ids[-1] == 2


def test_tokenize_offsets_and_decode_round_trip(original_dir: Path) -> None:
    enc = encoder(original_dir)
    text = "Zürich 東京 coffee"
    (item,) = enc.tokenize([text], Task.RETRIEVAL_QUERY, add_special_tokens=True)
    assert item.text.endswith(text) and len(item.text) > len(text)
    assert item.tokens[0].special and item.tokens[0].start is None and item.tokens[-1].piece == "</s>"
    content = item.tokens[1:-1]
    assert [t.id for t in item.tokens] == enc.encode([text], Task.RETRIEVAL_QUERY, truncate=False)[0].ids
    assert all(t.start is not None and t.stop is not None and t.start < t.stop for t in content)
    (bare,) = enc.tokenize([text], None, add_special_tokens=False)
    assert not any(t.special for t in bare.tokens) and bare.text == text
    ids = [t.id for t in enc.tokenize(["coffee in the morning"], None, add_special_tokens=True)[0].tokens]
    assert enc.decode([ids], skip_special_tokens=True) == ["coffee in the morning"]
    with pytest.raises(InvalidRequestError, match="vocabulary"):
        enc.decode([[1, 10**6]], skip_special_tokens=True)


def test_token_id_inputs_get_specials_and_instruction(original_dir: Path) -> None:
    enc = encoder(original_dir)
    (plain,) = enc.encode([(10, 11, 12)], None, truncate=False)
    assert plain.ids == [0, 10, 11, 12, 2]
    (query,) = enc.encode([(10, 11, 12)], Task.RETRIEVAL_QUERY, truncate=False)
    assert query.ids[0] == 0 and query.ids[-4:] == [10, 11, 12, 2] and len(query.ids) > 5
    with pytest.raises(InvalidRequestError, match="outside this model's vocabulary"):
        enc.encode([(1, 99999)], None, truncate=False)

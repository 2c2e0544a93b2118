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


def test_token_id_inputs_get_specials_and_instruction(original_dir: Path) -> None:
    enc = encoder(original_dir)
    (plain,) = enc.encode([(10, 11, 12)], None, truncate=False)
    assert plain.ids == [0, 10, 11, 12, 2]
    (query,) = enc.encode([(10, 11, 12)], Task.RETRIEVAL_QUERY, truncate=False)
    assert query.ids[0] == 0 and query.ids[-4:] == [10, 11, 12, 2] and len(query.ids) > 5
    with pytest.raises(InvalidRequestError, match="outside this model's vocabulary"):
        enc.encode([(1, 99999)], None, truncate=False)

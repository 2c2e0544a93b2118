"""Texts -> token ids exactly as the reference ``encode()`` tokenises them.

``<s> instruction+text </s>``: the task instruction is string-concatenated before tokenisation,
and special tokens are added around the whole. Over-long inputs are an error unless the caller
asks to truncate; then the tail is dropped and ``</s>`` kept (the reference's truncation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Encoding, Tokenizer

from gateway.contract import (
    InputTooLongError,
    InvalidRequestError,
    Task,
    Token,
    TokenIds,
    Tokenized,
    TruncationDirection,
)

__all__ = ["Document", "Encoded", "TextEncoder", "load_tokenizer"]


def load_tokenizer(path: Path) -> Tokenizer:
    """The fast tokenizer exactly as ``AutoTokenizer.from_pretrained(path)`` builds it.

    transformers 5 rebuilds XLM-R's pipeline (whitespace split + metaspace) around the vocabulary
    of ``tokenizer.json`` instead of using the file verbatim; the reference ``encode()`` and vLLM
    both tokenise through AutoTokenizer, so we take its backend and not the raw file.
    """
    from transformers import AutoTokenizer

    tok: Tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False).backend_tokenizer
    tok.no_truncation()
    tok.no_padding()
    return tok


@dataclass(frozen=True, slots=True)
class Encoded:
    ids: list[int]
    #: tokens before truncation (what the limit check saw)
    original_length: int


@dataclass(frozen=True, slots=True)
class Document:
    """One late-chunking document: ``<s> instruction+text </s>`` and where its tokens come from."""

    ids: list[int]
    #: ``(start, end)`` character range of every token between ``<s>`` and ``</s>``, in
    #: ``instruction + text`` (the instruction is ``content_start`` characters long)
    offsets: list[tuple[int, int]]
    content_start: int


class TextEncoder:
    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        instructions: dict[Task, str],
        max_tokens: int,
        vocab_size: int,
        bos_id: int = 0,
        eos_id: int = 2,
    ) -> None:
        self.tokenizer = tokenizer
        self.instructions = instructions
        self.max_tokens = max_tokens
        self.vocab_size = vocab_size
        self.bos_id = bos_id
        self.eos_id = eos_id
        self._instruction_ids = {
            task: tokenizer.encode(text, add_special_tokens=False).ids for task, text in instructions.items()
        }

    def prefix(self, task: Task | None) -> str:
        return self.instructions.get(task, "") if task is not None else ""

    def encode_texts(self, texts: Sequence[str], task: Task | None) -> list[Encoding]:
        """Raw encodings (no special tokens) of ``instruction + text``, with character offsets."""
        prefix = self.prefix(task)
        return self.tokenizer.encode_batch([prefix + t for t in texts], add_special_tokens=False)

    def encode_document(self, text: str, task: Task | None) -> Document:
        """The whole document as one sequence, with token offsets (no length limit: the caller
        decides whether it fits one pass or needs windows)."""
        prefix = self.prefix(task)
        enc = self.encode_texts([text], task)[0]
        return Document([self.bos_id, *enc.ids, self.eos_id], list(enc.offsets), len(prefix))

    def encode(
        self,
        inputs: Sequence[str | TokenIds],
        task: Task | None,
        *,
        truncate: bool,
        direction: TruncationDirection = "right",
    ) -> list[Encoded]:
        """Token ids for every input; raises ``InputTooLongError`` naming the first over-long one.

        Truncation keeps ``<s>`` and ``</s>`` and drops content tokens: the tail (``right``, the
        reference's) or the head (``left``, TEI's ``Left``: the instruction goes first)."""
        texts = [(i, x) for i, x in enumerate(inputs) if isinstance(x, str)]
        content: list[list[int]] = [[] for _ in inputs]
        for (i, _), enc in zip(texts, self.encode_texts([t for _, t in texts], task), strict=True):
            content[i] = enc.ids
        prefix_ids = self._instruction_ids.get(task, []) if task is not None else []
        for i, x in enumerate(inputs):
            if not isinstance(x, str):
                bad = next((v for v in x if not 0 <= v < self.vocab_size), None)
                if bad is not None:
                    raise InvalidRequestError(
                        f"input[{i}] has token id {bad}, outside this model's vocabulary (0..{self.vocab_size - 1})",
                        param=f"input[{i}]",
                    )
                content[i] = prefix_ids + list(x)
        out = []
        for i, ids in enumerate(content):
            n = len(ids) + 2
            if n > self.max_tokens:
                if not truncate:
                    raise InputTooLongError(i, n, self.max_tokens)
                keep = self.max_tokens - 2
                ids = ids[:keep] if direction == "right" else ids[len(ids) - keep :]
            out.append(Encoded([self.bos_id, *ids, self.eos_id], n))
        return out

    def tokenize(self, texts: Sequence[str], task: Task | None, *, add_special_tokens: bool) -> list[Tokenized]:
        """``instruction + text`` as the tokenizer cuts it, with character offsets (TEI's
        ``/tokenize``: no length limit; special tokens have no offsets)."""
        prefix = self.prefix(task)
        bos = Token(self.bos_id, self.tokenizer.id_to_token(self.bos_id) or "", True, None, None)
        eos = Token(self.eos_id, self.tokenizer.id_to_token(self.eos_id) or "", True, None, None)
        out = []
        for text, content in zip(texts, self.encode_texts(texts, task), strict=True):
            tokens = [
                Token(i, piece, False, a, b) for i, piece, (a, b) in zip(content.ids, content.tokens, content.offsets, strict=True)
            ]
            if add_special_tokens:
                tokens = [bos, *tokens, eos]
            out.append(Tokenized(prefix + text, tuple(tokens)))
        return out

    def decode(self, ids: Sequence[Sequence[int]], *, skip_special_tokens: bool) -> list[str]:
        """The text of each id sequence; ids outside the vocabulary are a 4xx, not silently dropped."""
        for i, seq in enumerate(ids):
            bad = next((v for v in seq if not 0 <= v < self.vocab_size), None)
            if bad is not None:
                raise InvalidRequestError(
                    f"ids[{i}] has token id {bad}, outside this model's vocabulary (0..{self.vocab_size - 1})",
                    param="ids",
                )
        return list(self.tokenizer.decode_batch([list(s) for s in ids], skip_special_tokens=skip_special_tokens))

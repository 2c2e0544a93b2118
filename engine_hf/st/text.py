"""Texts -> token ids exactly as sentence-transformers' Transformer module tokenises them.

``tokenizer(prompt + text, padding=True, truncation="longest_first")`` with the tokenizer's
``model_max_length`` as the limit: the prompt is string-concatenated before tokenisation, special
tokens are added around the whole, and truncation drops content tokens and keeps the special ones.
Here an over-long input is an error unless the request asks to truncate (then it is cut as
sentence-transformers cuts it). The tokenizer is transformers' ``AutoTokenizer`` (what
sentence-transformers loads), used through its fast backend from several threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, normalizers

from engine_hf.checkpoint import CheckpointError
from engine_hf.tokenization import Encoded
from gateway.contract import InputTooLongError, InvalidRequestError, TokenIds, TruncationDirection

__all__ = ["StText", "load_text"]

#: a word every vocabulary can tokenise, to see which special tokens the tokenizer adds around content
_PROBE = "hello world"


def load_text(
    folder: Path,
    *,
    processor_kwargs: dict[str, Any],
    max_seq_length: int | None,
    do_lower_case: bool,
    max_position_embeddings: int | None,
    max_input_tokens: int,
    vocab_size: int,
) -> StText:
    """The checkpoint's tokenizer, set up as ``Transformer.__init__`` sets it up: a legacy
    ``max_seq_length`` becomes ``model_max_length``; without an explicit one the limit is capped at
    the model's ``max_position_embeddings``; ``do_lower_case`` adds a Lowercase normaliser. The
    engine's limit is that, or ``max_input_tokens`` where smaller."""
    from transformers import AutoTokenizer

    kwargs = dict(processor_kwargs)
    if max_seq_length is not None and "model_max_length" not in kwargs:
        kwargs["model_max_length"] = max_seq_length
    hf = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False, **kwargs)
    backend: Tokenizer | None = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        raise CheckpointError(f"the checkpoint's tokenizer ({type(hf).__name__}) has no fast (tokenizers) backend")
    limit = int(hf.model_max_length)
    if "model_max_length" not in kwargs and max_position_embeddings is not None and max_position_embeddings != -1:
        limit = min(limit, max_position_embeddings)
    if do_lower_case and not _has_lowercase(backend.normalizer):
        current = backend.normalizer
        chain: list[normalizers.Normalizer] = [normalizers.Lowercase()]
        if isinstance(current, normalizers.Sequence):
            chain += list(current)  # type: ignore[call-overload]
        elif current is not None:
            chain.append(current)
        backend.normalizer = normalizers.Sequence(chain)
    backend.no_truncation()
    backend.no_padding()
    pad_id = hf.pad_token_id if hf.pad_token_id is not None else 0
    return StText(
        backend,
        max_tokens=min(limit, max_input_tokens),
        vocab_size=vocab_size,
        special_ids=frozenset(int(i) for i in hf.all_special_ids),
        pad_id=int(pad_id),
    )


def _has_lowercase(normalizer: normalizers.Normalizer | None) -> bool:
    """sentence-transformers' test: a Lowercase normaliser, alone or in a Sequence."""
    if normalizer is None:
        return False
    if isinstance(normalizer, normalizers.Lowercase):
        return True
    if isinstance(normalizer, normalizers.Sequence):
        return any(isinstance(n, normalizers.Lowercase) for n in normalizer)  # type: ignore[attr-defined]
    return False


class StText:
    """Token ids of ``prompt + text`` with the tokenizer's special tokens, within ``max_tokens``."""

    def __init__(
        self, tokenizer: Tokenizer, *, max_tokens: int, vocab_size: int, special_ids: frozenset[int], pad_id: int
    ) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.vocab_size = vocab_size
        self.special_ids = special_ids
        self.pad_id = pad_id
        full = tokenizer.encode(_PROBE, add_special_tokens=True).ids
        content = tokenizer.encode(_PROBE, add_special_tokens=False).ids
        at = _find(full, content)
        if at is None:
            raise CheckpointError("cannot tell which special tokens the tokenizer adds around a text")
        #: what the tokenizer's post-processor puts before and after the content
        self.prefix: list[int] = full[:at]
        self.suffix: list[int] = full[at + len(content) :]
        if len(self.prefix) + len(self.suffix) >= max_tokens:
            raise CheckpointError(f"max input tokens {max_tokens} leaves no room beside the special tokens")
        self._prompt_ids: dict[str, list[int]] = {}

    def encode(
        self, inputs: Sequence[str | TokenIds], prompt: str, *, truncate: bool, direction: TruncationDirection = "right"
    ) -> list[Encoded]:
        """Token ids for every input; raises ``InputTooLongError`` naming the first over-long one.
        Token-id inputs are content ids (no special tokens): the prompt's ids go before them."""
        texts = [(i, x) for i, x in enumerate(inputs) if isinstance(x, str)]
        full: list[list[int]] = [[] for _ in inputs]
        encoded = self.tokenizer.encode_batch([prompt + t for _, t in texts], add_special_tokens=True)
        for (i, _), enc in zip(texts, encoded, strict=True):
            full[i] = enc.ids
        for i, x in enumerate(inputs):
            if isinstance(x, str):
                continue
            bad = next((v for v in x if not 0 <= v < self.vocab_size), None)
            if bad is not None:
                raise InvalidRequestError(
                    f"input[{i}] has token id {bad}, outside this model's vocabulary (0..{self.vocab_size - 1})",
                    param=f"input[{i}]",
                )
            full[i] = [*self.prefix, *self.prompt_ids(prompt), *x, *self.suffix]
        out = []
        for i, ids in enumerate(full):
            n = len(ids)
            if n > self.max_tokens:
                if not truncate:
                    raise InputTooLongError(i, n, self.max_tokens)
                ids = self._cut(ids, direction)
            out.append(Encoded(ids, n))
        return out

    def prompt_ids(self, prompt: str) -> list[int]:
        if prompt not in self._prompt_ids:
            self._prompt_ids[prompt] = self.tokenizer.encode(prompt, add_special_tokens=False).ids if prompt else []
        return self._prompt_ids[prompt]

    def prompt_length(self, prompt: str) -> int:
        """Leading tokens the prompt takes, as sentence-transformers counts them for pooling with
        ``include_prompt: false``: the prompt tokenised alone (special tokens included, within the
        limit), less a trailing special token."""
        if not prompt:
            return 0
        ids = self.tokenizer.encode(prompt, add_special_tokens=True).ids
        if len(ids) > self.max_tokens:
            ids = self._cut(ids, "right")
        return len(ids) - (1 if ids and ids[-1] in self.special_ids else 0)

    def _cut(self, ids: list[int], direction: TruncationDirection) -> list[int]:
        """Keep the special tokens, drop content from the tail (``right``) or the head (``left``)."""
        np_, ns = len(self.prefix), len(self.suffix)
        content = ids[np_ : len(ids) - ns]
        keep = self.max_tokens - np_ - ns
        kept = content[:keep] if direction == "right" else content[len(content) - keep :]
        return [*ids[:np_], *kept, *ids[len(ids) - ns :]]


def _find(haystack: list[int], needle: list[int]) -> int | None:
    for start in range(len(haystack) - len(needle) + 1):
        if haystack[start : start + len(needle)] == needle:
            return start
    return None

"""The served model's tokenizer, in the gateway: exact token counts without asking vLLM.

With it the engine can send vLLM token ids instead of text (while vLLM is busy): a request's
``usage`` is the length of the ids it sent (so concurrent requests can share one call, see
:mod:`engine_vllm.coalesce`), and an over-long input is refused or truncated here, without a
``/tokenize`` call. It is loaded as vLLM loads it (:class:`LocalTokenizer`), and the engine checks
once, against vLLM's ``/tokenize``, that both give the same ids before using it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["CHECK_TEXTS", "LocalTokenizer", "is_hub_name", "tokenizer_from_command", "tokenizer_path"]

#: texts with what tokenizers disagree on: accents, compatibility forms (NFKC), CJK, symbols,
#: digits, runs of spaces, tabs and newlines, leading and trailing whitespace
CHECK_TEXTS = (
    "embed-gateway tokenizer check: Grüße aus Köln, 東京 ✓ 3.14  end",
    " leading and trailing spaces  ",
    "x ",
    "ﬁne Ａ①㎏ ｶﾀｶﾅ e\u0301 — “quotes” 🙂",
    "tab\there\nnew line\r\n\n  indented",
)


def tokenizer_path(path: str | Path) -> Path | None:
    """``tokenizer.json`` at ``path`` (the file, or a directory holding it), or of the hub model
    ``path`` names (``org/name``) when it is in the local Hugging Face cache (nothing is ever
    downloaded); None if there is none."""
    p = Path(path).expanduser()
    file = p / "tokenizer.json" if p.is_dir() else p
    if file.is_file() and file.name.endswith(".json"):
        return file
    return _in_hub_cache(str(path))


def is_hub_name(name: str) -> bool:
    """Whether ``name`` reads as a hub model (``org/name``) rather than a local path."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def _in_hub_cache(name: str) -> Path | None:
    if not is_hub_name(name):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(name, "tokenizer.json")
    except ValueError:  # not a valid repo id
        return None
    return Path(found) if isinstance(found, str) else None


def tokenizer_from_command(argv: Sequence[str]) -> Path | None:
    """The tokenizer a vLLM command line loads (``--tokenizer``, else ``--model``, else ``vllm serve
    MODEL``'s positional model), found as :func:`tokenizer_path` finds it."""
    args = list(argv)

    def flag(name: str) -> str | None:
        for i, a in enumerate(args):
            if a == name and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(name + "="):
                return a.split("=", 1)[1]
        return None

    source = flag("--tokenizer") or flag("--model")
    if source is None and "serve" in args:
        i = args.index("serve")
        if i + 1 < len(args) and not args[i + 1].startswith("-"):
            source = args[i + 1]
    return tokenizer_path(source) if source else None


class LocalTokenizer:
    """The model's tokenizer with its special tokens (as its post-processor adds them), no
    truncation, no padding.

    Built the way vLLM builds it where the gateway has ``transformers`` (``AutoTokenizer`` on the
    directory, never remote code: its pipeline can differ from the file's, e.g. in whitespace
    handling), run through its ``tokenizers`` backend; else ``tokenizer.json`` as it is. Either
    way the engine compares it with vLLM's before using it."""

    def __init__(self, file: Path) -> None:
        try:  # the ``hf`` extra has it; a vLLM-only install without it lets vLLM count
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise RuntimeError("the tokenizers package is not installed (pip install tokenizers)") from exc
        self.file = file
        self._tok = _as_loaded(file) or Tokenizer.from_file(str(file))
        self._tok.no_truncation()
        self._tok.no_padding()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        # without character offsets (only the ids are used): a quarter less CPU per short text than
        # ``encode`` (timed alone), the same ids (tested), and the GIL released while it runs
        return [e.ids for e in self._tok.encode_batch_fast(list(texts), add_special_tokens=True)]


def _as_loaded(file: Path) -> Any:
    """``transformers``' fast tokenizer for ``file``'s directory, as a ``tokenizers.Tokenizer``;
    None without transformers or a fast tokenizer there."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return None
    try:
        loaded = AutoTokenizer.from_pretrained(str(file.parent), trust_remote_code=False)
    except (OSError, ValueError):
        return None
    return getattr(loaded, "backend_tokenizer", None)

"""Find a BGE-M3 checkpoint in the published layout and say what its weights are.

The layout (``BAAI/bge-m3``, and what FlagEmbedding writes after fine-tuning): ``config.json`` and
the XLM-RoBERTa encoder's weights, ``sparse_linear.pt`` (``Linear(hidden -> 1)``),
``colbert_linear.pt`` (``Linear(hidden -> hidden)``) and the tokenizer files. Both heads are
required: FlagEmbedding silently starts untrained heads when they are missing, which would serve
random sparse and multi-vector outputs; here that is a load error.
"""

from __future__ import annotations

from pathlib import Path

from engine_hf.checkpoint import CheckpointError, checkpoint_fingerprint, resolve_model_dir

__all__ = ["COLBERT_FILE", "SPARSE_FILE", "fingerprint", "locate_checkpoint"]

SPARSE_FILE = "sparse_linear.pt"
COLBERT_FILE = "colbert_linear.pt"
#: what a hub download fetches: configs, safetensors weights, the two heads, tokenizer files
_ALLOW = ["*.json", "*.safetensors", "*.model", SPARSE_FILE, COLBERT_FILE]
#: the older weights file, fetched only when the repo has no safetensors
_LEGACY_WEIGHTS = "pytorch_model.bin"
#: files whose bytes make the outputs (the content hash of a local directory)
_FINGERPRINTED = (".json", ".safetensors", ".bin", ".model", ".txt", ".pt")


def locate_checkpoint(model: str, *, revision: str | None, cache_dir: str | None, local_files_only: bool) -> Path:
    """A local directory holding the whole layout, fetched from the hub when ``model`` is not one."""
    local = Path(model).expanduser().is_dir()
    path = resolve_model_dir(
        model, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, allow_patterns=_ALLOW
    )
    if not local and not any(path.glob("*.safetensors")):
        path = resolve_model_dir(
            model, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
            allow_patterns=[_LEGACY_WEIGHTS],
        )
    _check_layout(path)
    return path


def fingerprint(path: Path) -> str:
    """The content hash of a local directory of this layout (its ``.pt`` heads included)."""
    return checkpoint_fingerprint(path, suffixes=_FINGERPRINTED)


def _check_layout(path: Path) -> None:
    missing = [f for f in ("config.json", SPARSE_FILE, COLBERT_FILE) if not (path / f).is_file()]
    if not any(path.glob("*.safetensors")) and not (path / _LEGACY_WEIGHTS).is_file():
        missing.append("model.safetensors")
    if missing:
        raise CheckpointError(
            f"{path.name}: not a BGE-M3 checkpoint in the published layout (missing {', '.join(missing)}); "
            f"it needs config.json, the encoder weights, {SPARSE_FILE} and {COLBERT_FILE}"
        )
